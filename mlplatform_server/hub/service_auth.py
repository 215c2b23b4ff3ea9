"""The platform API as a JupyterHub service: users' hub tokens are accepted.

When the hub runs ``mlp server`` as a service (or it is configured with the same environment),
``JUPYTERHUB_API_URL`` and ``JUPYTERHUB_API_TOKEN`` are set. A token the platform did not issue is
then shown to the hub (``GET /hub/api/user`` with that token): it identifies the user and lists the
token's scopes, which must include ``access:services!service=<JUPYTERHUB_SERVICE_NAME>`` (or the
unfiltered ``access:services``). Whether the user is a hub admin is read with the service's own
token (its role needs ``read:users``). Answers are cached briefly, keyed by the token's digest.
"""

from __future__ import annotations

import hashlib
import os
import time
import urllib.parse
from collections.abc import Mapping

import httpx

from ..errors import BackendError

DEFAULT_SERVICE = "mlplatform"


class HubTokenAuthenticator:
    """``await auth(token)`` → ``(user name, hub admin)`` or None for a token the hub refuses."""

    def __init__(self, api_url: str, api_token: str, service_name: str = DEFAULT_SERVICE,
                 ttl: float = 10.0, timeout: float = 10.0) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_token = api_token
        self.service_name = service_name
        self.ttl = ttl
        self._timeout = timeout
        self._cache: dict[str, tuple[float, tuple[str, bool] | None]] = {}

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "HubTokenAuthenticator | None":
        env = os.environ if environ is None else environ
        url, token = env.get("JUPYTERHUB_API_URL"), env.get("JUPYTERHUB_API_TOKEN")
        if not url or not token:
            return None
        return cls(url, token, env.get("JUPYTERHUB_SERVICE_NAME") or DEFAULT_SERVICE)

    @property
    def required_scopes(self) -> set[str]:
        return {f"access:services!service={self.service_name}", "access:services"}

    async def __call__(self, token: str) -> tuple[str, bool] | None:
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        found = await self._ask_hub(token)
        if len(self._cache) > 10_000:
            self._cache = {k: v for k, v in self._cache.items() if v[0] > now}
        self._cache[key] = (now + self.ttl, found)
        return found

    async def _ask_hub(self, token: str) -> tuple[str, bool] | None:
        async with httpx.AsyncClient(timeout=self._timeout) as client:
            user = await self._get(client, "/user", token)
            if user is None:
                return None
            if not self.required_scopes & set(user.get("scopes") or []):
                return None
            name = str(user["name"])
            admin = user.get("admin")
            if admin is None:  # the token may not read its own admin flag: ask as the service
                model = await self._get(client, f"/users/{urllib.parse.quote(name, safe='')}", self._api_token)
                admin = bool(model and model.get("admin"))
            return name, bool(admin)

    async def _get(self, client: httpx.AsyncClient, path: str, token: str) -> dict | None:
        try:
            resp = await client.get(self.api_url + path, headers={"Authorization": f"token {token}"})
        except httpx.HTTPError as exc:
            raise BackendError(f"JupyterHub API at {self.api_url} did not answer: {type(exc).__name__}") from None
        if resp.status_code in (401, 403, 404):
            return None
        if resp.status_code >= 400:
            raise BackendError(f"JupyterHub API at {self.api_url} answered HTTP {resp.status_code}")
        return resp.json()
