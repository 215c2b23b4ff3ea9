"""Containerize: build a model version's image, push it, and record it on the version by digest.

The image is recorded (``ModelService.set_image``) only after the registry has the manifest, so a
failed or half-done push never changes the version; runs then use ``version.image``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..builders import BUILDERS, BuildContext, make_context
from ..builders.context import DEFAULT_MAX_BYTES
from ..backends.base import Backend
from ..builders.registry import ImageRef, registry_host
from ..config import PlatformConfig
from ..errors import ConfigError, InvalidInput
from ..store.db import Store
from .auth import Principal
from .models import ModelService
from .paging import check_fields

log = logging.getLogger("mlplatform.builds")

MODEL_REPOSITORY = "mlplatform/models/{name}"


@dataclass(frozen=True)
class BuildRequest:
    """The body of POST /models/{name}/versions/{version}/build (every field optional)."""

    environment: str | None = None
    builder: str | None = None  # auto (default) | layer | engine | buildkit
    context_dir: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "BuildRequest":
        check_fields(body, set(cls.__dataclass_fields__))
        for key, value in body.items():
            if value is not None and not isinstance(value, str):
                raise InvalidInput(f"'{key}' must be a string")
        return cls(**body)


class BuildService:
    def __init__(self, store: Store, config: PlatformConfig, models: ModelService, data_dir: Path,
                 registry_url: str | None = None, registry_auth_file: Path | str | None = None,
                 docker_host: str | None = None, max_context_bytes: int = DEFAULT_MAX_BYTES,
                 backend: Backend | None = None) -> None:
        self.store = store
        self.backend = backend  # runs the buildkit builder where it can (Backend.build_image)
        self.config = config
        self.models = models
        self.data_dir = Path(data_dir)
        self.registry_url = registry_url
        self.registry_auth_file = registry_auth_file
        self.docker_host = docker_host
        self.max_context_bytes = max_context_bytes

    def configure(self, registry_url: str | None = None, registry_auth_file: Path | str | None = None,
                  docker_host: str | None = None) -> None:
        self.registry_url = registry_url or None
        self.registry_auth_file = registry_auth_file or None
        self.docker_host = docker_host or None
        if self.registry_auth_file and not Path(self.registry_auth_file).is_file():
            raise ConfigError(f"The registry credentials file {self.registry_auth_file} does not exist")

    # -- context ---------------------------------------------------------------
    def context(self, caller: Principal, name: str, version: str | None, environment: str | None = None,
                context_dir: str | None = None) -> BuildContext:
        env = self.config.environment(environment)
        folder = None
        if context_dir is not None:
            if not isinstance(context_dir, str) or not os.path.isabs(context_dir):
                raise InvalidInput(f"'context_dir' must be an absolute path on the server, got {context_dir!r}")
            folder = Path(context_dir)
        with self.store.session() as s:
            row = self.models.resolve(s, caller, name, version)
            notebook_path = self.models.module_path(name, row.version).parent / row.source_name
            notebook = notebook_path.read_bytes() if notebook_path.is_file() else None
            return make_context(
                model=name,
                version=row.version,
                content_hash=row.content_hash,
                module_source=row.module_source,
                env_image=env.image,
                notebook_name=row.source_name,
                notebook_bytes=notebook,
                folder=folder,
                git_commit=row.git_commit,
                created=row.created_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
                max_bytes=self.max_context_bytes,
            )

    def dockerfile(self, caller: Principal, name: str, version: str | None, environment: str | None = None,
                   context_dir: str | None = None) -> str:
        return self.context(caller, name, version, environment, context_dir).dockerfile()

    # -- build -----------------------------------------------------------------
    def _registry(self, ctx: BuildContext) -> str:
        if self.registry_url:
            return self.registry_url
        try:  # no registry configured: the environment image's own registry
            return ImageRef.parse(ctx.env_image).registry
        except InvalidInput:
            raise ConfigError(
                "No registry is configured for image builds: start the server with --registry URL "
                "(or MLP_REGISTRY)") from None

    def auto_builder(self, ctx: BuildContext) -> str:
        """What `auto` means for `ctx`: layer when there is nothing to install, else buildkit on
        Kubernetes (no Docker daemon there) and engine elsewhere."""
        if not ctx.has_requirements:
            return "layer"
        return "buildkit" if self._builds_in_cluster() else "engine"

    def _builds_in_cluster(self) -> bool:
        return self.backend is not None and self.backend.builds_images

    def _plan(self, caller: Principal, name: str, version: str | None, environment: str | None,
              builder: str | None, context_dir: str | None) -> tuple[BuildContext, str, ImageRef, str]:
        """Check the request and resolve it: (context, builder, target image, registry URL)."""
        builder = builder or "auto"
        if builder not in BUILDERS:
            raise InvalidInput(f"Unknown builder {builder!r}: choose one of {', '.join(BUILDERS)}")
        if builder == "buildkit" and not self._builds_in_cluster():
            raise InvalidInput(
                "The buildkit builder runs a BuildKit Job on Kubernetes, and this platform runs with the "
                f"{getattr(self.backend, 'name', 'unknown')} backend: use --builder engine (or layer when there "
                "is no requirements.txt)")
        ctx = self.context(caller, name, version, environment, context_dir)
        if builder == "auto":
            builder = self.auto_builder(ctx)
        if builder == "layer" and ctx.has_requirements:
            raise InvalidInput("requirements.txt lists packages to install, which the layer builder cannot do: "
                               "use --builder engine (or auto)")
        registry_url = self._registry(ctx)
        target = ImageRef(registry_host(registry_url), MODEL_REPOSITORY.format(name=name), tag=ctx.version)
        return ctx, builder, target, registry_url

    def _record(self, caller: Principal, ctx: BuildContext, result: Any, environment: str | None) -> dict[str, Any]:
        # Recorded only now: the registry has every blob and the manifest.
        self.models.set_image(caller, ctx.model, ctx.version, result.image)
        log.info("built %s:%s with %s in %.2fs: %s (%s bytes uploaded)", ctx.model, ctx.version, result.builder,
                 result.seconds, result.image, result.bytes_uploaded)
        return {**result.to_json(), "model": ctx.model, "version": ctx.version,
                "environment": self.config.environment(environment).name}

    def build_sync(self, caller: Principal, name: str, version: str | None, environment: str | None = None,
                   builder: str | None = None, context_dir: str | None = None) -> dict[str, Any]:
        planned = self._plan(caller, name, version, environment, builder, context_dir)
        if planned[1] == "buildkit":
            raise InvalidInput("The buildkit builder waits for a Kubernetes Job: use build(), not build_sync()")
        return self._build_here(caller, *planned, environment)

    def _build_here(self, caller: Principal, ctx: BuildContext, builder: str, target: ImageRef, registry_url: str,
                    environment: str | None) -> dict[str, Any]:
        """The layer and engine builders, in this process (blocking)."""
        from ..builders.engine import build_engine
        from ..builders.layer import build_layer

        if builder == "layer":
            result = build_layer(ctx, target, registry_url, self.registry_auth_file,
                                 history=self.config.builders.layer.history)
        else:
            result = build_engine(ctx, target, registry_url, self.registry_auth_file, self.docker_host)
        return self._record(caller, ctx, result, environment)

    async def build(self, caller: Principal, name: str, version: str | None, environment: str | None = None,
                    builder: str | None = None, context_dir: str | None = None) -> dict[str, Any]:
        ctx, resolved, target, registry_url = await asyncio.to_thread(
            self._plan, caller, name, version, environment, builder, context_dir)
        if resolved != "buildkit":
            return await asyncio.to_thread(self._build_here, caller, ctx, resolved, target, registry_url, environment)
        assert self.backend is not None  # _plan chose buildkit only where the backend builds images
        result = await self.backend.build_image(ctx, target, registry_url, self.registry_auth_file,
                                                self.config.builders.buildkit, caller.name)
        return await asyncio.to_thread(self._record, caller, ctx, result, environment)
