"""A small typed client of the platform REST API (used by the CLI and the Jupyter extension)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import httpx

from .errors import PlatformError


class ApiError(PlatformError):
    """An error answer from the API, carrying its status and readable message."""

    def __init__(self, status: int, message: str, body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


class Client:
    def __init__(self, url: str | None = None, token: str | None = None, timeout: float = 60.0) -> None:
        self.url = (url or os.environ.get("MLP_URL") or "http://127.0.0.1:8000").rstrip("/")
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

    def stream_text(self, path: str, **params: Any) -> Iterator[str]:
        try:
            with self._http.stream("GET", path, params=params, timeout=None) as response:
                if response.status_code >= 400:
                    response.read()
                    _decode(response)
                yield from response.iter_text()
        except httpx.HTTPError as exc:
            raise ApiError(0, f"Lost the connection to the platform API at {self.url}: {exc}") from None


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
    return body if body is not None else response.text
