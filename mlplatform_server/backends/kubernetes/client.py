"""A thin async client of the Kubernetes API server: JSON dicts in and out, over httpx.

Only what the backend uses: create (idempotent: ``409 AlreadyExists`` reads the object back),
get, list, merge-patch, delete, and pod logs (streamed with ``follow``). Every request is retried
with exponential back-off on ``429`` and ``5xx`` answers (honouring ``Retry-After``) and on
connection errors; other errors raise :class:`ApiError` with the server's message.

Credentials come from a kubeconfig (the ``KUBECONFIG`` path, or the one given; client
certificates, bearer tokens, token files, CA data or files) or, inside a pod, from the mounted
service-account token. ``exec`` and auth-provider plugins are not supported (a clear error says so).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import json as jsonlib
import logging
import os
import random
import ssl
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import yaml

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# apiVersion → URL prefix; kind → plural resource name.
_GROUP_PREFIX = {"v1": "/api/v1"}
_PLURAL = {"HorizontalPodAutoscaler": "horizontalpodautoscalers"}
RETRY_STATUS = {429, 500, 502, 503, 504}


class ApiError(Exception):
    """An answer of the API server other than 2xx (after retries)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409


def resource_path(api_version: str, kind: str, namespace: str | None, name: str | None = None) -> str:
    prefix = _GROUP_PREFIX.get(api_version) or f"/apis/{api_version}"
    plural = _PLURAL.get(kind) or kind.lower() + "s"
    path = prefix + (f"/namespaces/{namespace}" if namespace else "") + f"/{plural}"
    return path + (f"/{name}" if name else "")


def _data_or_file(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    if entry.get(f"{key}-data"):
        return base64.b64decode(entry[f"{key}-data"])
    if entry.get(key):
        path = Path(entry[key])
        return (path if path.is_absolute() else base / path).read_bytes()
    return None


class KubeConfig:
    """Server URL, TLS settings and auth of one kubeconfig context (or of the pod's service account)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | bool, token: str | None = None,
                 token_file: Path | None = None) -> None:
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.token = token
        self.token_file = token_file

    @classmethod
    def load(cls, kubeconfig: str | None = None, context: str | None = None) -> "KubeConfig":
        path = kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
        if path is None and (SA_DIR / "token").exists() and os.environ.get("KUBERNETES_SERVICE_HOST"):
            return cls.in_cluster()
        path = path or str(Path.home() / ".kube" / "config")
        return cls.from_file(Path(path), context)

    @classmethod
    def in_cluster(cls) -> "KubeConfig":
        host = os.environ["KUBERNETES_SERVICE_HOST"]
        port = os.environ.get("KUBERNETES_SERVICE_PORT", "443")
        ctx = ssl.create_default_context(cafile=str(SA_DIR / "ca.crt"))
        return cls(f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}", ctx,
                   token_file=SA_DIR / "token")

    @classmethod
    def from_file(cls, path: Path, context: str | None = None) -> "KubeConfig":
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except OSError as exc:
            raise ValueError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ValueError(f"kubeconfig {path} is not valid YAML: {exc}") from None
        try:
            return cls._from_config(config, path, context)
        except (KeyError, TypeError, AttributeError) as exc:  # a missing or mistyped entry
            raise ValueError(f"kubeconfig {path} is malformed: {exc!r}") from None

    @classmethod
    def _from_config(cls, config: Any, path: Path, context: str | None) -> "KubeConfig":
        base = path.parent
        name = context or config.get("current-context")
        ctx = next((c["context"] for c in config.get("contexts") or [] if c.get("name") == name), None)
        if ctx is None:
            raise ValueError(f"kubeconfig {path}: no context {name!r}")
        cluster = next((c["cluster"] for c in config.get("clusters") or [] if c.get("name") == ctx.get("cluster")), None)
        user = next((u["user"] for u in config.get("users") or [] if u.get("name") == ctx.get("user")), {}) or {}
        if cluster is None:
            raise ValueError(f"kubeconfig {path}: no cluster {ctx.get('cluster')!r}")
        if user.get("exec") or user.get("auth-provider"):
            raise ValueError(f"kubeconfig {path}: exec and auth-provider credentials are not supported; "
                             "use a client certificate or a token")
        ssl_context: ssl.SSLContext | bool
        if cluster.get("insecure-skip-tls-verify"):
            ssl_context = False
        else:
            ca = _data_or_file(cluster, "certificate-authority", base)
            ssl_context = ssl.create_default_context(cadata=ca.decode() if ca else None)
            if ca is None:
                ssl_context.load_default_certs()
        cert = _data_or_file(user, "client-certificate", base)
        key = _data_or_file(user, "client-key", base)
        if cert and key:
            if ssl_context is False:
                ssl_context = ssl.create_default_context()
                ssl_context.check_hostname = False
                ssl_context.verify_mode = ssl.CERT_NONE
            assert isinstance(ssl_context, ssl.SSLContext)
            # ssl loads a certificate chain from files only: a private directory, removed at once.
            with tempfile.TemporaryDirectory(prefix="mlp-kube-") as tmp:
                cert_path, key_path = Path(tmp, "cert.pem"), Path(tmp, "key.pem")
                cert_path.write_bytes(cert)
                key_path.touch(mode=0o600)
                key_path.write_bytes(key)
                ssl_context.load_cert_chain(str(cert_path), str(key_path))
        token_file = Path(user["tokenFile"]) if user.get("tokenFile") else None
        return cls(cluster["server"], ssl_context, token=user.get("token"), token_file=token_file)

    def headers(self) -> dict[str, str]:
        token = self.token
        if self.token_file is not None:  # projected tokens rotate: read it every time
            token = self.token_file.read_text().strip()
        return {"Authorization": f"Bearer {token}"} if token else {}


class KubeClient:
    """JSON over HTTP to one API server."""

    def __init__(self, config: KubeConfig, *, retries: int = 6, backoff: float = 0.2, max_backoff: float = 5.0,
                 timeout: float = 30.0, max_connections: int = 64, impersonate: str | None = None) -> None:
        self.config = config
        # Impersonate-User (e.g. system:serviceaccount:NS:mlplatform): act with exactly that
        # identity's rights; used to prove the shipped Role is enough.
        extra = {"Impersonate-User": impersonate} if impersonate else {}
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        # HTTP/1.1: httpx's HTTP/2 (about a third less client CPU per request here) stalled
        # streams under load in our tests, each costing a read timeout and a retry.
        self.http = httpx.AsyncClient(
            base_url=config.server,
            verify=config.ssl_context,
            timeout=httpx.Timeout(timeout, connect=10.0),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            headers={"Accept": "application/json", "User-Agent": "mlplatform", **extra},
        )

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None, **kw: Any) -> "KubeClient":
        return cls(KubeConfig.load(kubeconfig, context), **kw)

    async def close(self) -> None:
        await self.http.aclose()

    def _delay(self, attempt: int, response: httpx.Response | None) -> float:
        if response is not None and response.headers.get("Retry-After", "").isdigit():
            return min(float(response.headers["Retry-After"]), self.max_backoff)
        return min(self.backoff * 2**attempt, self.max_backoff) * (0.5 + random.random() / 2)

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      content_type: str | None = None) -> dict[str, Any]:
        headers = self.config.headers()
        if content_type:
            headers["Content-Type"] = content_type
        for attempt in range(self.retries + 1):
            response: httpx.Response | None = None
            try:
                response = await self.http.request(method, path, json=json, params=params, headers=headers)
            except (httpx.TransportError, ssl.SSLError) as exc:
                if attempt == self.retries:
                    raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from None
                log.debug("%s %s: %s; retrying", method, path, exc)
            else:
                if response.status_code < 400:
                    return response.json() if response.content else {}
                if response.status_code not in RETRY_STATUS or attempt == self.retries:
                    raise _error(response)
                log.debug("%s %s answered %s; retrying", method, path, response.status_code)
            await asyncio.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    # -- verbs ---------------------------------------------------------------------------------
    async def _post_new(self, obj: dict[str, Any]) -> dict[str, Any] | None:
        """POST ``obj``; None when an object of its name exists already."""
        path = resource_path(obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"))
        try:
            return await self.request("POST", path, json=obj)
        except ApiError as exc:
            if not exc.conflict:
                raise
        return None

    async def create(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create ``obj``; if it exists already (a retried create), return the existing object."""
        created = await self._post_new(obj)
        if created is not None:
            return created
        meta = obj["metadata"]
        return await self.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"])

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", resource_path(api_version, kind, namespace, name))

    async def get_or_none(self, api_version: str, kind: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        try:
            return await self.get(api_version, kind, namespace, name)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise

    async def list(self, api_version: str, kind: str, namespace: str | None, *, label_selector: str | None = None,
                   field_selector: str | None = None) -> list[dict[str, Any]]:
        items, _ = await self.list_with_version(api_version, kind, namespace, label_selector=label_selector,
                                                field_selector=field_selector)
        return items

    async def list_with_version(self, api_version: str, kind: str, namespace: str | None, *,
                                label_selector: str | None = None,
                                field_selector: str | None = None) -> tuple[list[dict[str, Any]], str]:
        """The items and the list's resourceVersion (where a watch of the same selection starts)."""
        params = _selectors(label_selector, field_selector)
        body = await self.request("GET", resource_path(api_version, kind, namespace), params=params)
        return list(body.get("items") or []), str((body.get("metadata") or {}).get("resourceVersion") or "")

    async def watch(self, api_version: str, kind: str, namespace: str | None, *, resource_version: str,
                    label_selector: str | None = None, field_selector: str | None = None,
                    timeout_seconds: int = 300) -> AsyncIterator[dict[str, Any]]:
        """Watch events (``{"type": ADDED|MODIFIED|DELETED|BOOKMARK, "object": ...}``) after
        ``resource_version`` until the server ends the watch. An expired resourceVersion raises
        :class:`ApiError` 410 (whether the server answers 410 or sends it as an ERROR event)."""
        params: dict[str, Any] = {"watch": "1", "resourceVersion": resource_version, "allowWatchBookmarks": "true",
                                  "timeoutSeconds": str(timeout_seconds),
                                  **_selectors(label_selector, field_selector)}
        async with self.http.stream("GET", resource_path(api_version, kind, namespace), params=params,
                                    headers=self.config.headers(),
                                    timeout=httpx.Timeout(timeout_seconds + 30.0, connect=10.0)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            async for line in response.aiter_lines():
                if not line.strip():
                    continue
                event = jsonlib.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    raise ApiError(int(status.get("code") or 500), str(status.get("reason") or "Error"),
                                   str(status.get("message") or "watch error"))
                yield event

    async def patch(self, api_version: str, kind: str, namespace: str | None, name: str,
                    patch: dict[str, Any]) -> dict[str, Any]:
        return await self.request("PATCH", resource_path(api_version, kind, namespace, name), json=patch,
                                  content_type="application/merge-patch+json")

    async def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Create, or merge-patch an existing object with everything but its name (spec, data,
        labels, annotations)."""
        created = await self._post_new(obj)
        if created is not None:
            return created
        meta = obj["metadata"]
        body = {k: v for k, v in obj.items() if k not in ("apiVersion", "kind", "metadata")}
        body["metadata"] = {"labels": meta.get("labels") or {}, "annotations": meta.get("annotations") or {}}
        return await self.patch(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"], body)

    async def delete(self, api_version: str, kind: str, namespace: str | None, name: str,
                     propagation: str = "Background") -> bool:
        """Delete; False when it was already gone."""
        try:
            await self.request("DELETE", resource_path(api_version, kind, namespace, name),
                               json={"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation})
            return True
        except ApiError as exc:
            if exc.not_found:
                return False
            raise

    async def pod_log(self, namespace: str, pod: str, container: str | None = None) -> str | None:
        """The whole log of a pod's container; None when the pod is gone."""
        params = {"container": container} if container else None
        try:
            response = await self._raw("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", params)
        except ApiError as exc:
            if exc.not_found:
                return None
            raise
        return response

    async def _raw(self, method: str, path: str, params: dict[str, Any] | None, retries: int = 1) -> str:
        # A 5xx on a log request is mostly the kubelet being unreachable: retried once only.
        for attempt in range(retries + 1):
            try:
                response = await self.http.request(method, path, params=params, headers=self.config.headers())
            except httpx.TransportError as exc:
                if attempt == retries:
                    raise ApiError(0, "Unreachable", f"{method} {path}: {exc}") from None
                response = None
            else:
                if response.status_code < 400:
                    return response.text
                if response.status_code not in RETRY_STATUS or attempt == retries:
                    raise _error(response)
            await asyncio.sleep(self._delay(attempt, response))
        raise AssertionError("unreachable")

    async def stream_pod_log(self, namespace: str, pod: str, container: str | None = None) -> AsyncIterator[str]:
        """Follow a pod's log until the container ends (or the caller stops iterating)."""
        params: dict[str, Any] = {"follow": "true"}
        if container:
            params["container"] = container
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        async with self.http.stream("GET", f"/api/v1/namespaces/{namespace}/pods/{pod}/log", params=params,
                                    headers=self.config.headers(), timeout=httpx.Timeout(None, connect=10.0)) as response:
            if response.status_code >= 400:
                await response.aread()
                raise _error(response)
            async for chunk in response.aiter_bytes():
                text = decoder.decode(chunk)
                if text:
                    yield text
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    return {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}


def _error(response: httpx.Response) -> ApiError:
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    return ApiError(response.status_code, str(body.get("reason") or response.reason_phrase),
                    str(body.get("message") or response.text[:500]))
