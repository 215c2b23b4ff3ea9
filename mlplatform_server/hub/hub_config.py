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
