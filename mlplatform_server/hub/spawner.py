"""KubeSpawner for the platform's notebook pods.

On top of KubeSpawner (profile_list from :mod:`.profiles`):

- a spawn request is checked against the platform config and the user's groups first, so a size
  hidden from the form is refused with a message naming it, not a KeyError;
- the user's credentials Secret (``mlp-cred-<user>``, written by the platform API) is the
  container's ``envFrom`` (optional: a user without credentials still starts);
- ``mlp`` is preconfigured: ``MLP_URL`` (the platform API) and ``MLP_TOKEN`` (the server's
  hub-issued token, whose scopes include ``access:services!service=mlplatform``);
- tokens never sit in the pod spec as literals: ``JUPYTERHUB_API_TOKEN``, ``JPY_API_TOKEN`` and
  ``MLP_TOKEN`` are moved into a per-server Secret and read through ``secretKeyRef``; the Secret is
  deleted when the server stops. It is written right after the pod is created, while the pod is
  scheduled: the kubelet resolves a container's env only after pulling its image and creating
  the pod sandbox (and retries a container whose Secret is not there yet); ``start()`` does not
  return before the write is done, and a failed write fails the spawn.
"""

from __future__ import annotations

import asyncio
from typing import Any

from kubernetes_asyncio.client import (
    V1EnvFromSource,
    V1EnvVarSource,
    V1ObjectMeta,
    V1Secret,
    V1SecretEnvSource,
    V1SecretKeySelector,
)
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from traitlets import Any as AnyTrait
from traitlets import Unicode

from ..backends.kubernetes.manifests import credentials_secret_name
from ..backends.kubernetes.names import sanitize_name
from ..errors import ConfigError
from .profiles import check_user_options, spawner_groups

SECRET_ENV = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "MLP_TOKEN")


class MLPlatformSpawner(KubeSpawner):
    platform_config = AnyTrait(None, allow_none=True, config=True,
                               help="The PlatformConfig the profile_list was built from (spawn checks).")
    platform_url = Unicode("", config=True, help="The platform API as notebook pods reach it (MLP_URL).")

    @property
    def token_secret_name(self) -> str:
        return sanitize_name(f"{self.pod_name}-tokens")

    async def load_user_options(self) -> None:
        if self.platform_config is not None:
            check_user_options(self.platform_config, self.user_options or {}, spawner_groups(self),
                               self.user.name)
        await super().load_user_options()

    def get_env(self) -> dict[str, Any]:
        env = super().get_env()
        if self.platform_url:
            env["MLP_URL"] = self.platform_url
        if self.api_token:
            env["MLP_TOKEN"] = self.api_token
        if self.platform_config is not None:  # the TensorBoard launcher item (tensorboard.py)
            chosen = (self.user_options or {}).get("environment") or None
            try:
                environment = self.platform_config.environment(chosen)
            except ConfigError:  # refused by load_user_options before a pod is made
                environment = None
            env["MLP_TENSORBOARD"] = "1" if environment is not None and environment.tensorboard else "0"
        return env

    async def get_pod_manifest(self) -> Any:
        pod = await super().get_pod_manifest()
        container = pod.spec.containers[0]
        container.env_from = [*(container.env_from or []), V1EnvFromSource(
            secret_ref=V1SecretEnvSource(name=credentials_secret_name(self.user.name), optional=True))]
        secrets: dict[str, str] = {}
        for var in container.env or []:
            if var.name in SECRET_ENV and var.value is not None:
                secrets[var.name] = var.value
                var.value = None
                var.value_from = V1EnvVarSource(
                    secret_key_ref=V1SecretKeySelector(name=self.token_secret_name, key=var.name))
        self._pending_secret = (secrets, dict(pod.metadata.labels or {})) if secrets else None
        return pod

    async def _make_create_pod_request(self, pod: Any, request_timeout: float) -> bool:
        created = await super()._make_create_pod_request(pod, request_timeout)
        pending = getattr(self, "_pending_secret", None)
        if created and pending is not None:  # written while the pod is scheduled (see module doc)
            self._pending_secret = None
            self._secret_write = asyncio.ensure_future(self._write_token_secret(*pending))
        return created

    async def _start(self) -> Any:
        self._pending_secret: tuple[dict[str, str], dict[str, str]] | None = None
        self._secret_write: asyncio.Future | None = None
        try:
            return await super()._start()
        finally:
            if self._secret_write is not None:
                await self._secret_write  # a failed write fails the spawn

    async def _write_token_secret(self, data: dict[str, str], labels: dict[str, str]) -> None:
        body = V1Secret(metadata=V1ObjectMeta(name=self.token_secret_name, labels=labels),
                        string_data=data, type="Opaque")
        try:
            await self.api.create_namespaced_secret(self.namespace, body)
        except ApiException as exc:
            if exc.status != 409:
                raise
            await self.api.replace_namespaced_secret(self.token_secret_name, self.namespace, body)

    async def stop(self, now: bool = False) -> None:
        await super().stop(now=now)
        try:
            await self.api.delete_namespaced_secret(self.token_secret_name, self.namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
