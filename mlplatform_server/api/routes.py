"""The API's routes: one table that both tornado and the OpenAPI document are built from."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from tornado import web

from . import builds, credentials, deployments, meta, models, runs, schedules


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
    Route("/credentials", credentials.CredentialsHandler, {"get": "Names and write times of your credentials (never values); admins: ?user=NAME"}, "credentials"),
    Route("/credentials/{key}", credentials.CredentialHandler, {"put": "Set a credential, given to your runs and deployments as an environment variable", "delete": "Delete a credential"}, "credentials"),
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
    Route("/runs/{run_id}/artifacts", runs.ArtifactsHandler, {"get": "The run's artifact files: path, size, mtime (?prefix=logs/)"}, "runs"),
    Route("/runs/{run_id}/artifacts/{path}", runs.ArtifactFileHandler, {"get": "One artifact file's bytes (path relative to the artifacts, may hold '/')"}, "runs"),
    Route("/runs/{run_id}/metrics", runs.MetricsHandler, {"get": "All metric points", "post": "Record metrics (run token)"}, "runs"),
    Route("/deployments", deployments.DeploymentsHandler, {"get": "List deployments", "post": "Deploy a trained run"}, "deployments"),
    Route("/deployments/{name}", deployments.DeploymentHandler, {"get": "One deployment", "delete": "Undeploy"}, "deployments"),
    Route("/deployments/{name}/revisions", deployments.RevisionsHandler, {"get": "Every revision deployed to this name"}, "deployments"),
    Route("/deployments/{name}/rollback", deployments.RollbackHandler, {"post": "Deploy an earlier revision again (default: the previous one)"}, "deployments"),
    Route("/deployments/{name}/scale", deployments.ScaleHandler, {"post": "Set the replicas, or the autoscaler (kubernetes)"}, "deployments"),
    Route("/schedules", schedules.SchedulesHandler, {"get": "List schedules", "post": "Schedule a batch prediction (cron)"}, "schedules"),
    Route("/schedules/{name}", schedules.ScheduleHandler, {"get": "One schedule with its recent runs", "delete": "Delete a schedule; its running firings are cancelled"}, "schedules"),
    Route("/schedules/{name}/suspend", schedules.SuspendHandler, {"post": "Stop firing until resumed"}, "schedules"),
    Route("/schedules/{name}/resume", schedules.ResumeHandler, {"post": "Fire again (a firing missed within the starting deadline starts now)"}, "schedules"),
]

PREFIX = "/api/v1"


def tornado_pattern(path: str, base: str = "") -> str:
    """``{name}`` matches one segment; ``{path}`` (always last) the rest of the URL, slashes included."""
    template = re.escape(path).replace(r"\{", "{").replace(r"\}", "}")
    pattern = re.sub(r"\{(\w+)\}", lambda m: f"(?P<{m[1]}>{'.+' if m[1] == 'path' else '[^/]+'})", template)
    return base.rstrip("/") + PREFIX + pattern + "$"
