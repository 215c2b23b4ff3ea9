"""The API's routes: one table that both tornado and the OpenAPI document are built from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tornado import web

from . import builds, deployments, meta, models, runs


@dataclass(frozen=True)
class Route:
    path: str  # OpenAPI template under /api/v1, e.g. "/runs/{run_id}"
    handler: type[web.RequestHandler]
    operations: dict[str, str] = field(default_factory=dict)  # method → summary
    tag: str = "platform"


ROUTES: list[Route] = [
    Route("/health", meta.HealthHandler, {"get": "Liveness and version (no authentication)"}, "meta"),
    Route("/openapi.json", meta.OpenAPIHandler, {"get": "This document (no authentication)"}, "meta"),
    Route("/whoami", meta.WhoAmIHandler, {"get": "The caller's identity"}, "meta"),
    Route("/profiles", meta.ProfilesHandler, {"get": "Environments and hardware sizes defined by the admin"}, "meta"),
    Route("/users", meta.UsersHandler, {"post": "Create a user (admin)"}, "users"),
    Route("/users/{user}/tokens", meta.TokensHandler, {"post": "Create an API token for a user (admin or self)"}, "users"),
    Route("/contract/inspect", models.InspectHandler, {"post": "What saving a notebook would find, without saving"}, "models"),
    Route("/models", models.ModelsHandler, {"get": "List models", "post": "Save a notebook or module as a model version"}, "models"),
    Route("/models/{name}", models.ModelHandler, {"get": "A model with its versions"}, "models"),
    Route("/models/{name}/versions", models.VersionsHandler, {"get": "A model's versions", "post": "Save a new version"}, "models"),
    Route("/models/{name}/versions/{version}", models.VersionHandler, {"get": "One version, with its module source"}, "models"),
    Route("/models/{name}/versions/{version}/build", builds.BuildHandler, {"get": "The build context: generated Dockerfile and files", "post": "Build and push the version's image; records it on the version"}, "models"),
    Route("/runs", runs.RunsHandler, {"get": "List runs", "post": "Start a training or batch-prediction run"}, "runs"),
    Route("/runs/{run_id}", runs.RunHandler, {"get": "One run with its last metrics"}, "runs"),
    Route("/runs/{run_id}/cancel", runs.CancelHandler, {"post": "Cancel a pending or running run"}, "runs"),
    Route("/runs/{run_id}/replicate", runs.ReplicateHandler, {"post": "Launch the same run again"}, "runs"),
    Route("/runs/{run_id}/logs", runs.LogsHandler, {"get": "The run's log (text; ?follow=true streams)"}, "runs"),
    Route("/runs/{run_id}/metrics", runs.MetricsHandler, {"get": "All metric points", "post": "Record metrics (run token)"}, "runs"),
    Route("/deployments", deployments.DeploymentsHandler, {"get": "List deployments", "post": "Deploy a trained run"}, "deployments"),
    Route("/deployments/{name}", deployments.DeploymentHandler, {"get": "One deployment", "delete": "Undeploy"}, "deployments"),
]

PREFIX = "/api/v1"


def tornado_pattern(path: str, base: str = "") -> str:
    pattern = re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", re.escape(path).replace(r"\{", "{").replace(r"\}", "}"))
    return base.rstrip("/") + PREFIX + pattern + "$"
