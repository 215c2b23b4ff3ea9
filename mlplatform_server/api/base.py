"""The one base handler: authentication, JSON bodies, and domain errors → HTTP status + JSON."""

from __future__ import annotations

import logging
import uuid
from typing import Any

import orjson
from sqlalchemy.exc import IntegrityError
from tornado import web

from ..errors import Conflict, InvalidInput, PlatformError, Unauthorized
from ..services.auth import Principal
from ..services.platform import Platform

log = logging.getLogger("mlplatform.api")


class BaseHandler(web.RequestHandler):
    """Every API handler derives from this; `principal` is set before any verb runs."""

    public = False  # only the OpenAPI document and health check are public

    def initialize(self, platform: Platform) -> None:
        self.platform = platform
        self.principal: Principal | None = None

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.set_header("Cache-Control", "no-store")

    def check_xsrf_cookie(self) -> None:  # token-authenticated API: no cookies are used
        return None

    async def prepare(self) -> None:
        if self.public:
            return
        self.principal = await self.platform.auth.authenticate_request(self._token())

    def _token(self) -> str | None:
        header = self.request.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() in ("bearer", "token") and value.strip():
            return value.strip()
        return None

    @property
    def caller(self) -> Principal:
        assert self.principal is not None
        return self.principal

    # -- input ---------------------------------------------------------------
    def json_body(self) -> dict[str, Any]:
        try:
            body = orjson.loads(self.request.body or b"{}")
        except orjson.JSONDecodeError as exc:
            raise InvalidInput(f"Request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise InvalidInput("Request body must be a JSON object")
        return body

    def int_argument(self, name: str, default: int | None = None) -> int | None:
        raw = self.get_query_argument(name, None)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError:
            raise InvalidInput(f"Query parameter '{name}' must be an integer, got {raw!r}") from None

    def bool_argument(self, name: str) -> bool:
        return self.get_query_argument(name, "false").lower() in ("1", "true", "yes", "on")

    # -- output --------------------------------------------------------------
    def send(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, IntegrityError):  # a concurrent request (maybe on another server) wrote it first
            exc = Conflict(f"{self.request.method} {self.request.path} conflicted with a change made at the same "
                           "time (another request wrote the same record first) and was not made; try again")
        if isinstance(exc, PlatformError):
            self.set_status(exc.status)
            body = exc.to_json()
        elif isinstance(exc, web.HTTPError):
            body = {"error": "http_error", "message": exc.log_message or self._reason}
        else:
            error_id = uuid.uuid4().hex[:12]
            log.error("internal error %s", error_id, exc_info=kwargs.get("exc_info"))
            body = {"error": "internal", "message": f"Internal server error (error id {error_id})", "error_id": error_id}
        if isinstance(exc, Unauthorized):
            self.set_header("WWW-Authenticate", 'Bearer realm="mlplatform"')
        self.set_header("Content-Type", "application/json; charset=UTF-8")
        self.finish(orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS))

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        if isinstance(value, IntegrityError):
            log.info("%s %s → 409: %s", self.request.method, self.request.path, value.__class__.__name__)
        elif isinstance(value, PlatformError):
            log.info("%s %s → %s: %s", self.request.method, self.request.path, value.status, value.message)
        else:
            super().log_exception(typ, value, tb)


class NotFoundHandler(BaseHandler):
    public = True

    def prepare(self) -> None:  # type: ignore[override]
        self.send({"error": "not_found", "message": f"No API endpoint {self.request.path}"}, 404)
