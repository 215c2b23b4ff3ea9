"""The kubernetes backend: runs are ``batch/v1`` Jobs, deployments a Deployment + Service.

``manifests`` holds the pure builders (dicts in, dicts out), ``client`` a thin async client of the
API server, ``backend`` the :class:`~mlplatform_server.backends.base.Backend` implementation.
The backend is imported lazily so that the builders need nothing beyond the standard library.
"""

from __future__ import annotations

from typing import Any

from .manifests import ArtifactStore

__all__ = ["ArtifactStore", "KubernetesBackend"]


def __getattr__(name: str) -> Any:
    if name == "KubernetesBackend":
        from .backend import KubernetesBackend

        return KubernetesBackend
    raise AttributeError(name)
