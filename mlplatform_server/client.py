"""A small typed client of the platform REST API (used by the CLI and the Jupyter extension)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urljoin

import httpx

from .artifact_paths import artifact_url_path
from .errors import PlatformError

DEFAULT_URL = "http://127.0.0.1:8000"  # `mlp server`'s default address


class ApiError(PlatformError):
    """An error answer from the API, carrying its status and readable message."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = (url or os.environ.get("MLP_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("MLP_TOKEN", "")
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url + "/api/v1", headers=headers, timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"Cannot reach the platform API at {self.url}: {exc}") from None
        return _decode(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        return self.request("POST", path, json=body or {})

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # -- credentials: names out, values in only ----------------------------------------------
    def credentials(self, user: str | None = None) -> dict[str, Any]:
        """{"user", "items": [{"key", "updated_at"}]}: never the values."""
        return self.get("/credentials", user=user)

    def set_credential(self, key: str, value: str, user: str | None = None) -> dict[str, Any]:
        return self.request("PUT", f"/credentials/{quote(key, safe='')}", json={"value": value},
                            params=_only_set(user=user))

    def delete_credential(self, key: str, user: str | None = None) -> None:
        self.request("DELETE", f"/credentials/{quote(key, safe='')}", params=_only_set(user=user))

    def stream_text(self, path: str, **params: Any) -> Iterator[str]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _decode(response)
                yield from response.iter_text()
        except httpx.HTTPError as exc:
            raise ApiError(0, f"Lost the connection to the platform API at {self.url}: {exc}") from None

    # -- run artifacts -------------------------------------------------------------------------
    def artifacts(self, run_id: str, prefix: str | None = None) -> dict[str, Any]:
        """{"run", "prefix", "items": [{"path", "size", "mtime"}]}."""
        return self.get(f"/runs/{quote(run_id, safe='')}/artifacts", prefix=prefix)

    def download_artifact(self, run_id: str, path: str, dest: Path) -> int:
        """Stream one artifact into ``dest`` (written beside it, then renamed); the bytes written."""
        url = f"/runs/{quote(run_id, safe='')}/artifacts/{artifact_url_path(path)}"
        partial = dest.with_name(f".{dest.name}.part")
        written = 0
        try:
            with self._http.stream("GET", url, timeout=httpx.Timeout(60, read=600)) as response:
                if response.status_code >= 400:
                    response.read()
                    _decode(response)
                dest.parent.mkdir(parents=True, exist_ok=True)  # only once there is something to write
                with open(partial, "wb") as fh:
                    for chunk in response.iter_bytes():
                        fh.write(chunk)
                        written += len(chunk)
            os.replace(partial, dest)
        except httpx.HTTPError as exc:
            raise ApiError(0, f"Lost the connection to the platform API at {self.url}: {exc}") from None
        finally:
            partial.unlink(missing_ok=True)
        return written

    # -- deployments: revisions, rollback, scale ------------------------------------------------
    def deployment_revisions(self, name: str) -> dict[str, Any]:
        return self.get(f"/deployments/{quote(name, safe='')}/revisions")

    def rollback_deployment(self, name: str, revision: int | None = None) -> dict[str, Any]:
        return self.post(f"/deployments/{quote(name, safe='')}/rollback", {} if revision is None else {"revision": revision})

    def scale_deployment(self, name: str, replicas: int | None = None,
                         autoscale: dict[str, int] | None = None, autoscale_off: bool = False) -> dict[str, Any]:
        """A fixed number of replicas, or autoscale {"min", "max", "target_cpu"}, or autoscale_off."""
        body: dict[str, Any] = {} if replicas is None else {"replicas": replicas}
        if autoscale is not None or autoscale_off:
            body["autoscale"] = autoscale
        return self.post(f"/deployments/{quote(name, safe='')}/scale", body)

    # -- schedules: batch prediction on a cron schedule ---------------------------------------
    def create_schedule(self, name: str, model: str, source_run_id: str, inputs: str, outputs: str, schedule: str,
                        **options: Any) -> dict[str, Any]:
        """``options``: version, hardware, environment, timezone, starting_deadline_seconds, suspended."""
        body = {"name": name, "model": model, "source_run_id": source_run_id, "inputs": inputs,
                "outputs": outputs, "schedule": schedule, **_only_set(**options)}
        return self.post("/schedules", body)

    def schedules(self, limit: int | None = None, offset: int = 0) -> dict[str, Any]:
        return self.get("/schedules", limit=limit, offset=offset)

    def schedule(self, name: str) -> dict[str, Any]:
        """One schedule with its recent runs (``runs``)."""
        return self.get(f"/schedules/{quote(name, safe='')}")

    def delete_schedule(self, name: str) -> None:
        self.delete(f"/schedules/{quote(name, safe='')}")

    def suspend_schedule(self, name: str) -> dict[str, Any]:
        return self.post(f"/schedules/{quote(name, safe='')}/suspend")

    def resume_schedule(self, name: str) -> dict[str, Any]:
        return self.post(f"/schedules/{quote(name, safe='')}/resume")


class JupyterClient:
    """The user's Jupyter server's mlplatform routes (``mlp tensorboard``): its own URL and token."""

    def __init__(self, url: str, token: str = "") -> None:
        self.url = url if url.endswith("/") else url + "/"
        headers = {"Authorization": f"token {token}"} if token else {}
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(180, connect=10))

    def close(self) -> None:
        self._http.close()

    def open_tensorboard(self, run: str, start: bool = True) -> dict[str, Any]:
        """{"url" (a path on this server), "logdir"}; with start, the first request starts TensorBoard."""
        try:
            resp = self._http.post(urljoin(self.url, "mlplatform/tensorboards"), json={"run": run})
        except httpx.HTTPError as exc:
            raise ApiError(502, f"Cannot reach the Jupyter server at {self.url}: {type(exc).__name__}") from None
        if resp.status_code in (401, 403):
            raise ApiError(502, f"The Jupyter server at {self.url} refused the token (HTTP {resp.status_code}): "
                                "pass --jupyter-token or set MLP_JUPYTER_TOKEN")
        try:
            answer = resp.json()
        except ValueError:
            answer = None
        if resp.status_code != 200:
            message = answer.get("message") if isinstance(answer, dict) else None
            raise ApiError(502, f"TensorBoard for run {run}: {message or f'HTTP {resp.status_code}'}")
        if not isinstance(answer, dict) or not isinstance(answer.get("url"), str):
            raise ApiError(502, f"{self.url} did not answer as a Jupyter server with the mlplatform extension "
                                "(no TensorBoard URL in its answer): check --jupyter-url")
        if start:
            try:
                page = self._http.get(urljoin(self.url, answer["url"]), follow_redirects=True)
            except httpx.HTTPError as exc:
                raise ApiError(502, f"TensorBoard for run {run} did not answer: {type(exc).__name__}") from None
            if page.status_code != 200:
                raise ApiError(502, f"TensorBoard for run {run} did not start (HTTP {page.status_code})")
        return answer


def _only_set(**params: Any) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


def _decode(response: httpx.Response) -> Any:
    if response.status_code == 204:
        return None
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code >= 400:
        if isinstance(body, dict) and "message" in body:
            raise ApiError(response.status_code, body["message"], body)
        raise ApiError(response.status_code, f"HTTP {response.status_code}: {response.text[:200]}")
    if body is None:  # every JSON endpoint answers JSON; text (logs) goes through stream_text
        kind = response.headers.get("content-type") or "no content type"
        raise ApiError(response.status_code, f"{response.request.url} answered HTTP {response.status_code} with "
                       f"{kind}, not the platform API's JSON: is MLP_URL the platform API?")
    return body
