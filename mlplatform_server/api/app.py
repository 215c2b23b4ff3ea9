"""The tornado application serving the platform REST API."""

from __future__ import annotations

from tornado import web

from ..services.platform import Platform
from .base import NotFoundHandler
from .routes import ROUTES, tornado_pattern


def api_handlers(platform: Platform, base_url: str = "") -> list[tuple[str, type, dict]]:
    """(pattern, handler, kwargs) for each route; also mounted inside a Jupyter server."""
    handlers = [(tornado_pattern(r.path, base_url), r.handler, {"platform": platform}) for r in ROUTES]
    handlers.append((base_url.rstrip("/") + r"/api/v1/.*", NotFoundHandler, {"platform": platform}))
    return handlers


def make_app(platform: Platform) -> web.Application:
    return web.Application(api_handlers(platform), default_handler_class=NotFoundHandler,
                           default_handler_args={"platform": platform})
