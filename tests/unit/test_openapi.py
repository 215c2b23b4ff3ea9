"""The OpenAPI document matches the handlers: every route and verb, nothing more."""

from __future__ import annotations

from tornado import web

from mlplatform_server.api.openapi import openapi_document
from mlplatform_server.api.routes import PREFIX, ROUTES

VERBS = ("get", "post", "put", "patch", "delete")


def implemented(handler: type) -> set[str]:
    return {v for v in VERBS if getattr(handler, v) is not getattr(web.RequestHandler, v)}


def test_every_route_and_verb_is_documented_and_implemented():
    doc = openapi_document()
    assert set(doc["paths"]) == {PREFIX + r.path for r in ROUTES}
    for route in ROUTES:
        documented = set(doc["paths"][PREFIX + route.path])
        assert documented == implemented(route.handler), route.path


def test_only_health_and_document_are_public():
    public = {r.path for r in ROUTES if r.handler.public}
    assert public == {"/health", "/openapi.json"}
    for path, item in openapi_document()["paths"].items():
        for op in item.values():
            assert ("security" in op) == (path.removeprefix(PREFIX) not in public)
