"""The OpenAPI 3.1 document, generated from the route table so it cannot drift from the handlers."""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from .. import __version__

_ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {"error": {"type": "string"}, "message": {"type": "string"}, "details": {"type": "object"}},
}

_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("/models", "post"): {
        "type": "object",
        "required": ["name", "source", "filename"],
        "properties": {
            "name": {"type": "string"},
            "version": {"type": "string"},
            "source": {"type": "string", "description": "notebook JSON text or Python source"},
            "filename": {"type": "string", "description": "ends with .ipynb or .py"},
            "git_commit": {"type": "string"},
        },
    },
    ("/runs", "post"): {
        "type": "object",
        "required": ["model"],
        "properties": {
            "model": {"type": "string"},
            "version": {"type": "string"},
            "kind": {"type": "string", "enum": ["train", "batch-predict"]},
            "hyperparameters": {"type": "object"},
            "hardware": {"type": "string"},
            "environment": {"type": "string"},
            "source_run_id": {"type": "string"},
            "inputs": {"type": "string"},
            "outputs": {"type": "string"},
            "timeout_seconds": {"type": "integer"},
        },
    },
    ("/schedules", "post"): {
        "type": "object",
        "required": ["name", "model", "source_run_id", "inputs", "outputs", "schedule"],
        "properties": {
            "name": {"type": "string", "description": "unique; lowercase letters, digits and '-'"},
            "model": {"type": "string"},
            "version": {"type": "string", "description": "default: the latest (pinned when created)"},
            "source_run_id": {"type": "string", "description": "the succeeded training run whose artifacts to use"},
            "inputs": {"type": "string", "description": "absolute path"},
            "outputs": {"type": "string", "description": "absolute path pattern with {run_id} (and {date})"},
            "schedule": {"type": "string", "description": "cron: 'minute hour day-of-month month day-of-week' or @daily..."},
            "timezone": {"type": "string", "description": "IANA name; default UTC"},
            "hardware": {"type": "string"},
            "environment": {"type": "string"},
            "starting_deadline_seconds": {"type": "integer", "minimum": 10},
            "suspended": {"type": "boolean"},
        },
    },
    ("/deployments", "post"): {
        "type": "object",
        "required": ["model", "run_id"],
        "properties": {
            "model": {"type": "string"},
            "run_id": {"type": "string"},
            "version": {"type": "string"},
            "name": {"type": "string"},
            "replicas": {"type": "integer", "minimum": 1, "maximum": 64},
            "hardware": {"type": "string"},
            "environment": {"type": "string"},
            "autoscale": {"$ref": "#/components/schemas/Autoscale"},
        },
    },
    ("/deployments/{name}/rollback", "post"): {
        "type": "object",
        "properties": {"revision": {"type": "integer", "minimum": 1, "description": "default: the previous revision"}},
    },
    ("/deployments/{name}/scale", "post"): {
        "type": "object",
        "properties": {
            "replicas": {"type": "integer", "minimum": 0, "maximum": 64, "description": "fixed replicas; autoscaling off"},
            "autoscale": {"$ref": "#/components/schemas/Autoscale"},
        },
    },
}

_AUTOSCALE = {
    "type": ["object", "null"],
    "description": "A HorizontalPodAutoscaler (kubernetes backend only); null turns it off",
    "required": ["min", "max"],
    "properties": {
        "min": {"type": "integer", "minimum": 1, "maximum": 64},
        "max": {"type": "integer", "minimum": 1, "maximum": 64},
        "target_cpu": {"type": "integer", "minimum": 1, "maximum": 100, "default": 70},
    },
}

_PAGED = {"/models", "/runs", "/deployments", "/schedules"}

_CREDENTIAL_BODY = {
    "type": "object",
    "required": ["value"],
    "properties": {"value": {"type": "string", "minLength": 1, "description": "at most 16 KiB; never answered back"}},
}
_BODIES[("/credentials/{key}", "put")] = _CREDENTIAL_BODY
# Query parameters beyond paging, by route path (every verb).
_QUERY: dict[str, list[dict[str, Any]]] = {
    "/credentials": [{"name": "user", "in": "query", "schema": {"type": "string"},
                      "description": "admins: another user's credentials"}],
}
_QUERY["/credentials/{key}"] = _QUERY["/credentials"]
_QUERY["/runs/{run_id}/artifacts"] = [{"name": "prefix", "in": "query", "schema": {"type": "string"},
                                       "description": "only paths starting with this, e.g. logs/"}]
# Routes answering bytes rather than JSON on success.
_BINARY = {"/runs/{run_id}/artifacts/{path}"}


@lru_cache(maxsize=1)
def openapi_document() -> dict[str, Any]:
    from .routes import PREFIX, ROUTES

    paths: dict[str, Any] = {}
    for route in ROUTES:
        params = [
            {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}
            for name in re.findall(r"\{(\w+)\}", route.path)
        ]
        item: dict[str, Any] = {}
        for method, summary in route.operations.items():
            op: dict[str, Any] = {
                "summary": summary,
                "tags": [route.tag],
                "operationId": f"{method}_{route.path.strip('/').replace('/', '_').replace('{', '').replace('}', '').replace('.', '_')}",
                "responses": {
                    "2XX": {"description": "Success", "content": {
                        "application/octet-stream" if route.path in _BINARY else "application/json": {}}},
                    "4XX": {"description": "Client error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                },
            }
            if params:
                op["parameters"] = list(params)
            if method == "get" and route.path in _PAGED:
                op["parameters"] = [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 500}},
                    {"name": "offset", "in": "query", "schema": {"type": "integer", "minimum": 0}},
                ]
            if route.path in _QUERY:
                op["parameters"] = op.get("parameters", []) + list(_QUERY[route.path])
            body = _BODIES.get((route.path.replace("/models/{name}/versions", "/models"), method))
            if body is not None or method == "post":
                op["requestBody"] = {"content": {"application/json": {"schema": body or {"type": "object"}}}}
            if route.path not in ("/health", "/openapi.json"):
                op["security"] = [{"bearer": []}]
            item[method] = op
        paths[PREFIX + route.path] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "mlplatform API", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {"Error": _ERROR, "Autoscale": _AUTOSCALE},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
