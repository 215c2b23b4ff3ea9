"""A thin async client of the Kubernetes API server: JSON dicts in and out, over aiohttp.

Only what the backend uses: create (idempotent: ``409 AlreadyExists`` reads the object back),
get, list, merge-patch, delete, and pod logs (streamed with ``follow``). Every request is retried
with exponential back-off on ``429`` and ``5xx`` answers (waiting at least ``Retry-After``, plus
jitter) and on connection errors; other errors raise :class:`ApiError` with the server's message.

Credentials come from a kubeconfig (the ``KUBECONFIG`` path, or the one given; client
certificates, bearer tokens, token files, CA data or files) or, inside a pod, from the mounted
service-account token. ``exec`` and auth-provider plugins are not supported (a clear error says so).
"""

from __future__ import annotations

import asyncio
import base64
import codecs
import logging
import os
import random
import ssl
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson  # watch events and bodies: ≈ 2× faster than json for the ≈ 7 KB objects a watch streams
import yaml

log = logging.getLogger(__name__)

SA_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

# apiVersion → URL prefix; kind → plural resource name.
_GROUP_PREFIX = {"v1": "/api/v1"}
_PLURAL = {"HorizontalPodAutoscaler": "horizontalpodautoscalers"}
RETRY_STATUS = {429, 500, 502, 503, 504}
# The Accept header that asks the API server for an object's metadata only (get, list, create...).
METADATA_ONLY = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"


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


TOKEN_FILE_SECONDS = 60.0


class KubeConfig:
    """Server URL, TLS settings and auth of one kubeconfig context (or of the pod's service account)."""

    def __init__(self, server: str, ssl_context: ssl.SSLContext | bool, token: str | None = None,
                 token_file: Path | None = None) -> None:
        self.server = server.rstrip("/")
        self.ssl_context = ssl_context
        self.token = token
        self.token_file = token_file
        self._file_token: tuple[float, str] | None = None  # (when read, the token)

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
        if self.token_file is not None:
            token = self._token_from_file()
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _token_from_file(self) -> str:
        """A projected token rotates (the kubelet renews it at 80 % of its life, an hour by
        default): the file is read again once TOKEN_FILE_SECONDS have passed, as client-go does,
        not for every request."""
        assert self.token_file is not None
        now = time.monotonic()
        if self._file_token is None or now - self._file_token[0] >= TOKEN_FILE_SECONDS:
            self._file_token = (now, self.token_file.read_text().strip())
        return self._file_token[1]


class _Answer:
    """What a request brought back: status, reason, Retry-After and the whole body."""

    __slots__ = ("status", "reason", "retry_after", "body")

    def __init__(self, status: int, reason: str, retry_after: str | None, body: bytes) -> None:
        self.status = status
        self.reason = reason
        self.retry_after = retry_after
        self.body = body


# What a broken or timed-out connection raises (aiohttp's ServerTimeoutError is a ClientError and a
# TimeoutError; a total timeout raises asyncio's TimeoutError).
TRANSPORT_ERRORS = (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError, asyncio.TimeoutError, ssl.SSLError)


class KubeClient:
    """JSON over HTTP/1.1 to one API server. aiohttp: about a third of httpx's client CPU per
    request here; HTTP/1.1 only, as wanted (httpx's HTTP/2 stalled streams under load in our tests,
    each costing a read timeout and a retry). The session is made on first use, inside the event
    loop that uses it."""

    def __init__(self, config: KubeConfig, *, retries: int = 6, backoff: float = 0.2, max_backoff: float = 5.0,
                 timeout: float = 30.0, max_connections: int = 64, impersonate: str | None = None) -> None:
        self.config = config
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_connections = max_connections
        # Impersonate-User (e.g. system:serviceaccount:NS:mlplatform): act with exactly that
        # identity's rights; used to prove the shipped Role is enough.
        self.default_headers = {"Accept": "application/json", "User-Agent": "mlplatform",
                                **({"Impersonate-User": impersonate} if impersonate else {})}
        # Like httpx's Timeout(timeout, connect=10): a bound on each read and on waiting for a
        # pooled connection, 10 s to connect, no bound on the whole request.
        self.timeout = aiohttp.ClientTimeout(total=None, connect=timeout, sock_connect=10.0, sock_read=timeout)
        self._http: aiohttp.ClientSession | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None = None, context: str | None = None, **kw: Any) -> "KubeClient":
        return cls(KubeConfig.load(kubeconfig, context), **kw)

    @property
    def http(self) -> aiohttp.ClientSession:
        """The session of the running event loop (a new one if the loop changed)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._loop is not loop or self._http.closed:
            # config.ssl_context False: no verification (insecure-skip-tls-verify).
            connector = aiohttp.TCPConnector(limit=self.max_connections, ssl=self.config.ssl_context)
            self._http = aiohttp.ClientSession(connector=connector, headers=self.default_headers,
                                               timeout=self.timeout, raise_for_status=False)
            self._loop = loop
        return self._http

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _url(self, path: str) -> str:
        return self.config.server + path

    def _delay(self, attempt: int, answer: _Answer | None) -> float:
        if answer is not None and answer.retry_after is not None and answer.retry_after.isdigit():
            # At least what the server asks (up to max_backoff), plus up to as much again at random:
            # requests rejected together (API Priority and Fairness) must not all come back at the
            # same instant, to be rejected together again (tests/kube/test_api_throttling.py).
            floor = min(float(answer.retry_after), self.max_backoff)
            return floor + random.random() * max(floor, self.backoff)
        return min(self.backoff * 2**attempt, self.max_backoff) * (0.5 + random.random() / 2)

    async def _send(self, method: str, path: str, params: dict[str, Any] | None, headers: dict[str, str],
                    data: bytes | None) -> _Answer:
        async with self.http.request(method, self._url(path), params=params, headers=headers, data=data) as response:
            body = await response.read()
            return _Answer(response.status, response.reason or "", response.headers.get("Retry-After"), body)

    async def _exchange(self, method: str, path: str, *, params: dict[str, Any] | None = None,
                        data: bytes | None = None, content_type: str | None = None, retries: int | None = None,
                        accept: str | None = None) -> bytes:
        """The body of a 2xx answer, after retries on 429/5xx and on connection errors."""
        retries = self.retries if retries is None else retries
        headers = self.config.headers()
        if content_type:
            headers["Content-Type"] = content_type
        if accept:
            headers["Accept"] = accept
        for attempt in range(retries + 1):
            answer: _Answer | None = None
            try:
                answer = await self._send(method, path, params, headers, data)
            except TRANSPORT_ERRORS as exc:
                if attempt == retries:
                    raise ApiError(0, "Unreachable", f"{method} {path}: {exc!r}") from None
                log.debug("%s %s: %r; retrying", method, path, exc)
            else:
                if answer.status < 400:
                    return answer.body
                if answer.status not in RETRY_STATUS or attempt == retries:
                    raise _error(answer.status, answer.reason, answer.body)
                log.debug("%s %s answered %s; retrying", method, path, answer.status)
            await asyncio.sleep(self._delay(attempt, answer))
        raise AssertionError("unreachable")

    async def request(self, method: str, path: str, *, json: Any = None, params: dict[str, Any] | None = None,
                      content_type: str | None = None, accept: str | None = None) -> dict[str, Any]:
        data = None
        if json is not None:
            data = orjson.dumps(json)
            content_type = content_type or "application/json"
        body = await self._exchange(method, path, params=params, data=data, content_type=content_type, accept=accept)
        return orjson.loads(body) if body else {}

    # -- verbs ---------------------------------------------------------------------------------
    async def _post_new(self, obj: dict[str, Any], accept: str | None = None) -> dict[str, Any] | None:
        """POST ``obj``; None when an object of its name exists already."""
        path = resource_path(obj["apiVersion"], obj["kind"], obj["metadata"].get("namespace"))
        try:
            return await self.request("POST", path, json=obj, accept=accept)
        except ApiError as exc:
            if not exc.conflict:
                raise
        return None

    async def create(self, obj: dict[str, Any], *, metadata_only: bool = False) -> dict[str, Any]:
        """Create ``obj``; if it exists already (a retried create), return the existing object.
        ``metadata_only``: only the object's apiVersion, kind and metadata (name, uid, labels...) come
        back (the server answers a ``PartialObjectMetadata``), so neither side encodes or parses the
        whole object."""
        created = await self._post_new(obj, METADATA_ONLY if metadata_only else None)
        if created is None:
            meta = obj["metadata"]
            created = await self.get(obj["apiVersion"], obj["kind"], meta.get("namespace"), meta["name"],
                                     metadata_only=metadata_only)
        if metadata_only:
            return {"apiVersion": obj["apiVersion"], "kind": obj["kind"], "metadata": created["metadata"]}
        return created

    async def get(self, api_version: str, kind: str, namespace: str | None, name: str, *,
                  metadata_only: bool = False) -> dict[str, Any]:
        return await self.request("GET", resource_path(api_version, kind, namespace, name),
                                  accept=METADATA_ONLY if metadata_only else None)

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
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=timeout_seconds + 30.0)
        async with self.http.get(self._url(resource_path(api_version, kind, namespace)), params=params,
                                 headers=self.config.headers(), timeout=timeout) as response:
            if response.status >= 400:
                raise _error(response.status, response.reason or "", await response.read())
            async for line in _lines(response):
                event = orjson.loads(line)
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
        body = await self._exchange(method, path, params=params, retries=retries)
        return body.decode("utf-8", errors="replace")

    async def stream_pod_log(self, namespace: str, pod: str, container: str | None = None) -> AsyncIterator[str]:
        """Follow a pod's log until the container ends (or the caller stops iterating)."""
        params: dict[str, Any] = {"follow": "true"}
        if container:
            params["container"] = container
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10.0, sock_read=None)
        async with self.http.get(self._url(f"/api/v1/namespaces/{namespace}/pods/{pod}/log"), params=params,
                                 headers=self.config.headers(), timeout=timeout) as response:
            if response.status >= 400:
                raise _error(response.status, response.reason or "", await response.read())
            async for chunk in response.content.iter_any():
                text = decoder.decode(chunk)
                if text:
                    yield text
            tail = decoder.decode(b"", final=True)
            if tail:
                yield tail


async def _lines(response: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    """The non-empty lines of a streamed body, however long (aiohttp's own line reader has a limit).
    A connection that breaks mid-body raises (``ClientPayloadError``); a clean end of the body
    ends the iteration."""
    pending = b""
    async for chunk in response.content.iter_any():
        pending += chunk
        if b"\n" not in chunk:
            continue
        *lines, pending = pending.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if pending.strip():
        yield pending


def _selectors(label_selector: str | None, field_selector: str | None) -> dict[str, str]:
    return {k: v for k, v in (("labelSelector", label_selector), ("fieldSelector", field_selector)) if v}


def _error(status: int, reason: str, body: bytes) -> ApiError:
    try:
        parsed = orjson.loads(body)
    except ValueError:
        parsed = {}
    if not isinstance(parsed, dict):
        parsed = {}
    return ApiError(status, str(parsed.get("reason") or reason),
                    str(parsed.get("message") or body[:500].decode("utf-8", errors="replace")))
