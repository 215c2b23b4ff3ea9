"""Execution backends, loaded lazily by name (the docker SDK is only imported when used)."""

from __future__ import annotations

import importlib
from typing import Any

from ..errors import ConfigError
from .base import Backend

_BACKENDS = {
    "process": "mlplatform_server.backends.process:ProcessBackend",
    "docker": "mlplatform_server.backends.docker:DockerBackend",
    "kubernetes": "mlplatform_server.backends.kubernetes:KubernetesBackend",
}


def create_backend(name: str, **options: Any) -> Backend:
    if name not in _BACKENDS:
        raise ConfigError(f"Unknown backend {name!r}: expected one of {', '.join(sorted(_BACKENDS))}")
    module_name, _, cls_name = _BACKENDS[name].partition(":")
    cls = getattr(importlib.import_module(module_name), cls_name)
    return cls(**options)


def docker_engine_answers(base_url: str | None = None) -> bool:
    """True when a Docker-compatible engine (Docker or Podman) answers at DOCKER_HOST."""
    try:
        import docker

        client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False
