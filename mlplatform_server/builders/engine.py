"""The `engine` builder: `docker build` of the generated Dockerfile through the Docker Engine API
(Docker or Podman's compatible service), then a push to the registry. For builds that install a
requirements.txt on one machine."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from ..errors import BackendError, InvalidInput
from .context import BuildContext
from .layer import BuildResult
from .registry import ImageRef, RegistryClient, RegistryError, load_credentials


class EngineBuildError(BackendError):
    code = "build_failed"


def _client(docker_host: str | None):
    import docker

    try:
        return docker.DockerClient(base_url=docker_host, timeout=900) if docker_host else docker.from_env(timeout=900)
    except docker.errors.DockerException as exc:
        raise EngineBuildError(f"The engine builder needs a Docker-compatible engine (DOCKER_HOST): {exc}") from None


def _tail(lines: list[str], n: int = 15) -> str:
    return "".join(lines[-n:]).strip()


def build_engine(ctx: BuildContext, target: ImageRef, registry_url: str, auth_file: Path | str | None = None,
                 docker_host: str | None = None) -> BuildResult:
    import docker

    started = time.monotonic()
    if not target.tag:
        raise InvalidInput("The engine builder needs a tag for the target image")
    repo = f"{target.registry}/{target.repository}"
    client = _client(docker_host)
    api = client.api
    log: list[str] = []
    try:
        try:
            stream = api.build(fileobj=io.BytesIO(ctx.docker_context_tar()), custom_context=True,
                               tag=f"{repo}:{target.tag}", rm=True, forcerm=True, network_mode="host",
                               decode=True)
            for chunk in stream:
                if "stream" in chunk:
                    log.append(chunk["stream"])
                if "error" in chunk or "errorDetail" in chunk:
                    message = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message", "")
                    raise EngineBuildError(f"docker build of {ctx.model}:{ctx.version} failed: {message.strip()}"
                                           + (f"\n{_tail(log)}" if log else ""))
        except docker.errors.APIError as exc:
            raise EngineBuildError(f"docker build of {ctx.model}:{ctx.version} failed: {exc.explanation or exc}") from None
        except docker.errors.DockerException as exc:
            raise EngineBuildError(f"The container engine did not answer: {exc}") from None

        auth = None
        credentials = load_credentials(auth_file, target.registry)
        if credentials:
            auth = {"username": credentials[0], "password": credentials[1]}
        digest = None
        try:
            for chunk in api.push(repo, tag=target.tag, stream=True, decode=True, auth_config=auth):
                if "error" in chunk or "errorDetail" in chunk:
                    message = chunk.get("error") or (chunk.get("errorDetail") or {}).get("message", "")
                    raise RegistryError(f"Pushing {repo}:{target.tag} failed: {message.strip()}")
                aux: Any = chunk.get("aux") or {}
                if isinstance(aux, dict) and aux.get("Digest"):
                    digest = aux["Digest"]
        except docker.errors.APIError as exc:
            raise RegistryError(f"Pushing {repo}:{target.tag} failed: {exc.explanation or exc}") from None
    finally:
        client.close()

    # The digest as the registry has it (an engine may not report it, or report another encoding's).
    with RegistryClient(registry_url, auth_file) as registry:
        _, _, digest = registry.get_manifest(target.repository, target.tag)
    return BuildResult(
        image=f"{target.registry}/{target.repository}@{digest}",
        builder="engine",
        bytes_uploaded=None,
        layer_size=None,
        seconds=time.monotonic() - started,
    )
