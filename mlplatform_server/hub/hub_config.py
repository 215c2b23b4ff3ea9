"""What both hub configs set alike (jupyter-config/jupyterhub_config.py on Kubernetes,
jupyterhub_local_config.py on one machine): the platform config, checked before the hub serves
anything, and the platform API as the hub service ``mlplatform`` with its roles and scopes."""

from __future__ import annotations

import os
import sys
from typing import Any

from ..config import PlatformConfig
from ..errors import ConfigError
from .profiles import load_hub_config
from .service_auth import DEFAULT_SERVICE

SERVICE = DEFAULT_SERVICE
SERVICE_SCOPE = f"access:services!service={SERVICE}"


def platform_config_or_exit() -> PlatformConfig:
    """``$MLP_PLATFORM_CONFIG`` (default: the shipped one); a bad one stops the hub, naming the bad key,
    before any user sees a broken form."""
    try:
        return load_hub_config(os.environ.get("MLP_PLATFORM_CONFIG") or None)
    except ConfigError as exc:
        print(f"mlplatform: the hub does not start, bad platform config: {exc.message}", file=sys.stderr)
        raise SystemExit(2) from None


def configure_platform_service(c: Any, platform_url: str, api_token: str | None) -> None:
    """The platform API as a hub service: users' tokens (and their servers' tokens, also their
    MLP_TOKEN) carry access:services!service=mlplatform; the service reads users (admin flag) and
    groups with its own token. Hub admins are platform admins."""
    service: dict[str, Any] = {"name": SERVICE, "url": platform_url, "display": False, "oauth_no_confirm": True}
    if api_token:
        service["api_token"] = api_token
    c.JupyterHub.services = [service]
    c.JupyterHub.load_roles = [
        {"name": "user", "description": "Standard user privileges, and the platform API",
         "scopes": ["self", SERVICE_SCOPE]},
        {"name": "mlplatform-service", "description": "The platform API: who is an admin",
         "scopes": ["read:users", "read:groups"], "services": [SERVICE]},
    ]
    c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", SERVICE_SCOPE]


# The environment images' user (images/: uid 1000, home /home/mlp): notebook pods never run as root.
NOTEBOOK_UID = 1000
NOTEBOOK_HOME = "/home/mlp"


def configure_notebook_pods(c: Any, home_claim: str, home_subpath: str = "home/{username}") -> None:
    """KubeSpawner's notebook pods: home on the shared RWX claim (the user's own subPath, so code
    outlives the pod and jobs can read it), the images' non-root user, no Kubernetes API token."""
    c.KubeSpawner.automount_service_account_token = False
    c.KubeSpawner.storage_pvc_ensure = False  # homes live on one shared RWX claim, not per-user PVCs
    c.KubeSpawner.volumes = [{"name": "home", "persistentVolumeClaim": {"claimName": home_claim}}]
    c.KubeSpawner.volume_mounts = [{"name": "home", "mountPath": NOTEBOOK_HOME, "subPath": home_subpath}]
    c.KubeSpawner.uid = NOTEBOOK_UID
    c.KubeSpawner.gid = NOTEBOOK_UID
    c.KubeSpawner.fs_gid = NOTEBOOK_UID
    c.KubeSpawner.working_dir = NOTEBOOK_HOME
    c.KubeSpawner.environment = {"HOME": NOTEBOOK_HOME}
    c.KubeSpawner.container_security_context = {
        "runAsNonRoot": True, "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}
