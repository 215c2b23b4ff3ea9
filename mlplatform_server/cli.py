"""`mlp`: the command line, a client of the REST API (MLP_URL, MLP_TOKEN).

Every command takes --json. Failures print one line to stderr and exit non-zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

from .artifact_paths import clean_relative
from . import __version__
from .client import DEFAULT_URL, ApiError, Client, JupyterClient
from .errors import InvalidInput, PlatformError

FINAL = ("succeeded", "failed", "cancelled")


# -- plumbing -----------------------------------------------------------------
def json_option(func: Callable) -> Callable:
    return click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")(func)


def client() -> Client:
    return Client()


def emit(data: Any, as_json: bool, human: Callable[[Any], str] | None = None) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
    elif human is not None:
        click.echo(human(data))
    else:
        click.echo(json.dumps(data, indent=2, sort_keys=True))


def split_ref(ref: str) -> tuple[str, str | None]:
    """'name:version' → (name, version); 'name' → (name, None)."""
    name, _, version = ref.partition(":")
    if not name:
        raise click.BadParameter(f"expected MODEL or MODEL:VERSION, got {ref!r}")
    return name, version or None


def parse_hp(values: tuple[str, ...]) -> dict[str, str]:
    """--hp k=v pairs; values stay strings: the server coerces them to each hyperparameter's type."""
    result: dict[str, str] = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise click.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint="--hp")
        result[key.strip()] = value
    return result


def wait_for_run(api: Client, run: dict[str, Any], quiet: bool) -> dict[str, Any]:
    delay = 0.2
    while run["status"] not in FINAL:
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
        run = api.get(f"/runs/{run['id']}")
    if not quiet:
        click.echo(f"run {run['id']} {run['status']}" + (f": {run['reason']}" if run.get("reason") else ""), err=True)
    return run


def table(rows: list[dict[str, Any]], columns: list[str]) -> str:
    if not rows:
        return "(none)"
    cells = [[str(r.get(c, "") if r.get(c) is not None else "") for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def run_summary(run: dict[str, Any]) -> str:
    lines = [
        f"run        {run['id']} ({run['kind']})",
        f"status     {run['status']}" + (f" — {run['reason']}" if run.get("reason") else ""),
        f"model      {run['model']}:{run['version']}",
        f"hardware   {run['hardware'].get('name')}   environment {run['environment'].get('name')}",
        f"hyperparameters {json.dumps(run['hyperparameters'], sort_keys=True)}",
    ]
    if run.get("metrics"):
        lines.append("metrics    " + ", ".join(f"{k}={v:g}" for k, v in run["metrics"].items()))
    return "\n".join(lines)


def git_commit_of(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path.parent), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


class Group(click.Group):
    """Turns platform errors into one line on stderr and exit 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ApiError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(1)
        except PlatformError as exc:
            click.echo(f"error: {exc.message}", err=True)
            ctx.exit(1)
        except OSError as exc:
            click.echo(f"error: {exc.strerror or exc}: {getattr(exc, 'filename', '') or ''}".rstrip(": "), err=True)
            ctx.exit(1)
        except (KeyError, IndexError, TypeError) as exc:
            # An answer without what this CLI reads: another version of the platform, or not the platform.
            if os.environ.get("MLP_DEBUG"):
                raise
            click.echo(f"error: unexpected answer from the platform API at {os.environ.get('MLP_URL') or DEFAULT_URL} "
                       f"({type(exc).__name__}: {exc}); is it an mlplatform server of this version "
                       f"({__version__})? MLP_DEBUG=1 shows the traceback", err=True)
            ctx.exit(1)


@click.group(cls=Group)
@click.version_option(package_name="mlplatform")
def main() -> None:
    """mlplatform: save, train, batch-predict and deploy notebook models."""


# -- server -------------------------------------------------------------------
@main.command()
@click.option("--backend", type=click.Choice(["auto", "process", "docker", "kubernetes"]), default="auto",
              show_default=True,
              help="Where runs execute; auto picks docker when a Docker-compatible engine answers.")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=Path(".mlp-data"), show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8000, show_default=True)
@click.option("--db-url", default=None, envvar="MLP_DB_URL", help="SQLAlchemy URL; default SQLite in the data dir.")
@click.option("--config", "config_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="platform.yaml with environments and hardware sizes.")
@click.option("--public-url", default=None, help="URL runs use to reach the API (default http://HOST:PORT).")
@click.option("--registry", "registry_url", default=None, envvar="MLP_REGISTRY",
              help="Registry for built model images (HOST:PORT or URL); default: the environment image's.")
@click.option("--registry-auth", "registry_auth", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="MLP_REGISTRY_AUTH", help="docker config.json with the registry's credentials.")
@click.option("--namespace", default=None, help="kubernetes: the namespace of runs and deployments (required).")
@click.option("--kubeconfig", default=None, help="kubernetes: kubeconfig path (default $KUBECONFIG).")
@click.option("--pvc", default=None, help="kubernetes: RWX PersistentVolumeClaim holding the data dir.")
@click.option("--artifacts-uri", default=None, help="kubernetes: object-store URI for artifacts (instead of --pvc).")
@click.option("--priority-class", default=None, help="kubernetes: priorityClassName of run pods.")
@click.option("--namespace-per-user", is_flag=True, default=False,
              help="kubernetes: each user's objects in their own namespace, PREFIX<user> (made by an admin); "
                   "excludes --namespace.")
@click.option("--namespace-prefix", default=None, help="kubernetes: with --namespace-per-user (default mlp-u-).")
def server(backend: str, data_dir: Path, host: str, port: int, db_url: str | None, config_path: Path | None,
           public_url: str | None, registry_url: str | None, registry_auth: Path | None, **kube: str | None) -> None:
    """Run the platform API."""
    import asyncio
    import logging
    import os

    from .server import ServerOptions, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = ServerOptions(
        data_dir=data_dir, host=host, port=port, backend=backend, db_url=db_url, config=config_path,
        public_url=public_url, docker_host=os.environ.get("DOCKER_HOST"),
        admin_token=os.environ.get("MLP_TOKEN") or None, registry_url=registry_url, registry_auth_file=registry_auth,
        **kube,
    )
    asyncio.run(serve(options))


# -- models -------------------------------------------------------------------
@main.group(cls=Group)
def models() -> None:
    """Save and inspect models."""


@models.command("save")
@click.argument("path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--name", required=True, help="Model name (lowercase letters, digits, '-').")
@click.option("--version", default=None, help="Version label; default: the next number.")
@json_option
def models_save(path: Path, name: str, version: str | None, as_json: bool) -> None:
    """Save a notebook (.ipynb) or module (.py) as a model version."""
    body = {"name": name, "version": version, "source": path.read_text(), "filename": path.name,
            "git_commit": git_commit_of(path.resolve())}
    result = client().post("/models", body)

    def human(r: dict[str, Any]) -> str:
        hps = ", ".join(f"{h['name']}: {h['type']} = {json.dumps(h['default'])}" for h in r["hyperparameters"])
        lines = [f"{'saved' if r.get('created') else 'unchanged'} {r['model']}:{r['version']} ({r['content_hash'][:19]})",
                 f"hyperparameters: {hps or '(none)'}", f"methods: {', '.join(r['methods'])}"]
        lines += [f"warning: {w}" for w in r.get("warnings", [])]
        return "\n".join(lines)

    emit(result, as_json, human)


@models.command("list")
@click.option("--limit", type=int, default=None)
@click.option("--offset", type=int, default=0)
@json_option
def models_list(limit: int | None, offset: int, as_json: bool) -> None:
    """List models."""
    page = client().get("/models", limit=limit, offset=offset)
    emit(page, as_json, lambda p: table(p["items"], ["name", "latest_version", "owner", "created_at"]))


@models.command("show")
@click.argument("ref")
@click.option("--source", is_flag=True, help="Print the module generated from the notebook.")
@json_option
def models_show(ref: str, source: bool, as_json: bool) -> None:
    """Show MODEL or MODEL:VERSION."""
    name, version = split_ref(ref)
    api = client()
    if version is None:
        version = api.get(f"/models/{name}")["latest_version"]
    data = api.get(f"/models/{name}/versions/{version}")
    if source and not as_json:
        click.echo(data["module_source"])
        return
    emit(data, as_json, lambda d: "\n".join(
        [f"{d['model']}:{d['version']}  {d['content_hash']}", f"owner {d['owner']}  image {d['image'] or '-'}",
         "hyperparameters: " + ", ".join(f"{h['name']}={json.dumps(h['default'])} ({h['type']})" for h in d["hyperparameters"]),
         "methods: " + ", ".join(d["methods"])] + [f"warning: {w}" for w in d["warnings"]]))


# -- runs ---------------------------------------------------------------------
def _submit_run(body: dict[str, Any], wait: bool, as_json: bool, path: str = "/runs") -> None:
    api = client()
    run = api.post(path, body)
    if not as_json:
        click.echo(f"started run {run['id']} ({run['kind']} {run['model']}:{run['version']})", err=True)
    if wait:
        run = wait_for_run(api, run, quiet=as_json)
    emit(run, as_json, run_summary)
    if wait and run["status"] != "succeeded":
        sys.exit(1)


@main.command()
@click.argument("ref")
@click.option("--hp", "hps", multiple=True, metavar="NAME=VALUE", help="Override a hyperparameter (repeatable).")
@click.option("--hardware", default=None, help="Hardware size (see `mlp profiles`).")
@click.option("--env", "environment", default=None, help="Software environment (see `mlp profiles`).")
@click.option("--timeout", type=int, default=None, help="Fail the run after this many seconds.")
@click.option("--wait", is_flag=True, help="Wait until the run ends; exit 1 unless it succeeded.")
@json_option
def train(ref: str, hps: tuple[str, ...], hardware: str | None, environment: str | None, timeout: int | None,
          wait: bool, as_json: bool) -> None:
    """Train MODEL[:VERSION] with overridden hyperparameters."""
    name, version = split_ref(ref)
    _submit_run({"model": name, "version": version, "kind": "train", "hyperparameters": parse_hp(hps),
                 "hardware": hardware, "environment": environment, "timeout_seconds": timeout}, wait, as_json)


@main.command()
@click.argument("ref")
@click.option("--env", "environment", default=None, help="Environment whose image to build on (see `mlp profiles`).")
@click.option("--builder", type=click.Choice(["layer", "engine", "buildkit", "auto"]), default="auto",
              show_default=True, help="layer: append the code onto the environment image in the registry; engine: "
              "docker build; buildkit: a rootless BuildKit Job (kubernetes backend).")
@click.option("--context", "context_dir", type=click.Path(exists=True, file_okay=False, path_type=Path), default=None,
              help="The notebook's folder: its other files go into the image (.mlpignore, else .gitignore, applies).")
@click.option("--dockerfile", is_flag=True, help="Print the generated Dockerfile; build nothing.")
@json_option
def build(ref: str, environment: str | None, builder: str, context_dir: Path | None, dockerfile: bool,
          as_json: bool) -> None:
    """Containerize MODEL[:VERSION]: build its image, push it, and record it on the version."""
    name, version = split_ref(ref)
    api = Client(timeout=1900.0)  # an engine build installs packages; a buildkit Job may take its 1800 s
    if version is None:
        version = api.get(f"/models/{name}")["latest_version"]
    folder = str(context_dir.resolve()) if context_dir else None
    if dockerfile:
        data = api.get(f"/models/{name}/versions/{version}/build", environment=environment, context_dir=folder)
        emit(data, as_json, lambda d: d["dockerfile"].rstrip("\n"))
        return
    result = api.post(f"/models/{name}/versions/{version}/build",
                      {"environment": environment, "builder": builder, "context_dir": folder})
    emit(result, as_json, lambda r: r["image"])


@main.command("predict-batch")
@click.argument("ref")
@click.option("--run", "run_id", required=True, help="The training run whose artifacts to use.")
@click.option("--input", "inputs", required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--output", "outputs", required=True, type=click.Path(path_type=Path))
@click.option("--hardware", default=None)
@click.option("--env", "environment", default=None)
@click.option("--wait", is_flag=True)
@json_option
def predict_batch(ref: str, run_id: str, inputs: Path, outputs: Path, hardware: str | None,
                  environment: str | None, wait: bool, as_json: bool) -> None:
    """Run MODEL[:VERSION]'s batch_predict over --input, writing --output."""
    name, version = split_ref(ref)
    _submit_run({"model": name, "version": version, "kind": "batch-predict", "source_run_id": run_id,
                 "inputs": str(inputs.resolve()), "outputs": str(outputs.resolve()),
                 "hardware": hardware, "environment": environment}, wait, as_json)


@main.group(cls=Group)
def runs() -> None:
    """Inspect and control runs."""


@runs.command("list")
@click.option("--status", default=None)
@click.option("--model", default=None)
@click.option("--limit", type=int, default=None)
@click.option("--offset", type=int, default=0)
@json_option
def runs_list(status: str | None, model: str | None, limit: int | None, offset: int, as_json: bool) -> None:
    page = client().get("/runs", status=status, model=model, limit=limit, offset=offset)
    emit(page, as_json, lambda p: table(
        [{**r, "model": f"{r['model']}:{r['version']}", "metrics": " ".join(f"{k}={v:g}" for k, v in r["metrics"].items())}
         for r in p["items"]], ["id", "kind", "status", "model", "schedule", "metrics", "created_at"]))


@runs.command("show")
@click.argument("run_id")
@json_option
def runs_show(run_id: str, as_json: bool) -> None:
    emit(client().get(f"/runs/{run_id}"), as_json, run_summary)


@runs.command("logs")
@click.argument("run_id")
@click.option("--follow", "-f", is_flag=True, help="Stream until the run ends.")
@json_option
def runs_logs(run_id: str, follow: bool, as_json: bool) -> None:
    api = client()
    if as_json:
        text = "".join(api.stream_text(f"/runs/{run_id}/logs"))
        emit({"id": run_id, "logs": text}, True)
        return
    for chunk in api.stream_text(f"/runs/{run_id}/logs", follow="true" if follow else "false"):
        click.echo(chunk, nl=False)


@runs.command("metrics")
@click.argument("run_id")
@json_option
def runs_metrics(run_id: str, as_json: bool) -> None:
    data = client().get(f"/runs/{run_id}/metrics")
    emit(data, as_json, lambda d: table(d["items"], ["name", "step", "value", "time"]))


@runs.command("artifacts")
@click.argument("run_id")
@click.option("--prefix", default=None, help="Only paths starting with this, e.g. logs/.")
@json_option
def runs_artifacts(run_id: str, prefix: str | None, as_json: bool) -> None:
    """List RUN's artifact files (path, size, modification time)."""
    data = client().artifacts(run_id, prefix)
    emit(data, as_json, lambda d: table(
        [{**f, "mtime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(f["mtime"]))} for f in d["items"]],
        ["path", "size", "mtime"]))


@runs.command("download")
@click.argument("run_id")
@click.argument("paths", nargs=-1)
@click.option("--all", "everything", is_flag=True, help="Every artifact (with --prefix: those under it).")
@click.option("--prefix", default=None, help="With --all: only paths starting with this.")
@click.option("-o", "--output", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=Path("."),
              show_default=True, help="Folder to write into; each file keeps its relative path.")
@json_option
def runs_download(run_id: str, paths: tuple[str, ...], everything: bool, prefix: str | None, out_dir: Path,
                  as_json: bool) -> None:
    """Download RUN's artifact PATHs (or --all) into --output."""
    if bool(paths) == everything:
        raise InvalidInput("give artifact PATHs or --all (see `mlp runs artifacts RUN`), not both")
    if prefix is not None and not everything:
        raise InvalidInput("--prefix goes with --all")
    api = client()
    wanted = [f["path"] for f in api.artifacts(run_id, prefix)["items"]] if everything else list(paths)
    files = []
    for path in wanted:
        rel = clean_relative(path)  # the local copy stays under --output whatever the answer held
        dest = out_dir / rel
        files.append({"path": rel, "file": str(dest), "size": api.download_artifact(run_id, path, dest)})
    emit({"run": run_id, "files": files}, as_json, lambda d: "\n".join(f["file"] for f in d["files"]) or "(none)")


@runs.command("cancel")
@click.argument("run_id")
@json_option
def runs_cancel(run_id: str, as_json: bool) -> None:
    emit(client().post(f"/runs/{run_id}/cancel"), as_json, run_summary)


@runs.command("replicate")
@click.argument("run_id")
@click.option("--wait", is_flag=True)
@json_option
def runs_replicate(run_id: str, wait: bool, as_json: bool) -> None:
    """Launch the same version, hyperparameters, hardware and environment again."""
    _submit_run({}, wait, as_json, path=f"/runs/{run_id}/replicate")


# -- deployments --------------------------------------------------------------
@main.command()
@click.argument("ref")
@click.option("--run", "run_id", required=True, help="The succeeded training run to serve.")
@click.option("--name", default=None, help="Deployment name (default: the model name).")
@click.option("--replicas", type=int, default=1, show_default=True)
@click.option("--hardware", default=None)
@click.option("--env", "environment", default=None)
@click.option("--min-replicas", type=int, default=None, help="Autoscale (kubernetes): at least this many replicas.")
@click.option("--max-replicas", type=int, default=None, help="Autoscale (kubernetes): at most this many replicas.")
@click.option("--target-cpu", type=int, default=None, help="Autoscale (kubernetes): average CPU use to keep, in "
              "percent of the requested CPU (default 70).")
@click.option("--wait", is_flag=True, help="Wait until it answers /ping.")
@json_option
def deploy(ref: str, run_id: str, name: str | None, replicas: int, hardware: str | None,
           environment: str | None, min_replicas: int | None, max_replicas: int | None, target_cpu: int | None,
           wait: bool, as_json: bool) -> None:
    """Serve MODEL[:VERSION] trained by --run at URL/invocations; prints the URL. Deploying to an
    existing name is a rolling update to a new revision."""
    model, version = split_ref(ref)
    api = client()
    body = {"model": model, "version": version, "run_id": run_id, "name": name,
            "replicas": replicas, "hardware": hardware, "environment": environment}
    autoscale = _autoscale_body(min_replicas, max_replicas, target_cpu)
    if autoscale is not None:
        body["autoscale"] = autoscale
    _wait_deployment(api, api.post("/deployments", body), wait, as_json)


def _autoscale_body(low: int | None, high: int | None, target_cpu: int | None) -> dict[str, int] | None:
    values = {"min": low, "max": high, "target_cpu": target_cpu}
    return {k: v for k, v in values.items() if v is not None} or None


def _wait_deployment(api: Client, dep: dict[str, Any], wait: bool, as_json: bool) -> None:
    """With wait, poll until the deployment is no longer deploying; print it; exit 1 unless ready."""
    delay = 0.2
    while wait and dep["status"] == "deploying":
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)
        dep = api.get(f"/deployments/{dep['name']}")
    emit(dep, as_json, lambda d: (f"{d['url']}/invocations" if d.get("url") else f"{d['name']}: {d['status']}"))
    if wait and dep["status"] != "ready":
        click.echo(f"error: deployment {dep['name']} {dep['status']}: {dep.get('reason') or ''}", err=True)
        sys.exit(1)


@main.group(cls=Group)
def deployments() -> None:
    """List, roll back, scale and delete deployments."""


@deployments.command("list")
@click.option("--limit", type=int, default=None)
@click.option("--offset", type=int, default=0)
@json_option
def deployments_list(limit: int | None, offset: int, as_json: bool) -> None:
    page = client().get("/deployments", limit=limit, offset=offset)
    emit(page, as_json, lambda p: table(
        [{**d, "model": f"{d['model']}:{d['version']}"} for d in p["items"]], ["name", "status", "model", "run_id", "url"]))


@deployments.command("show")
@click.argument("name")
@json_option
def deployments_show(name: str, as_json: bool) -> None:
    emit(client().get(f"/deployments/{name}"), as_json)


@deployments.command("delete")
@click.argument("name")
@json_option
def deployments_delete(name: str, as_json: bool) -> None:
    client().delete(f"/deployments/{name}")
    emit({"deleted": name}, as_json, lambda d: f"deleted {d['deleted']}")


@deployments.command("revisions")
@click.argument("name")
@json_option
def deployments_revisions(name: str, as_json: bool) -> None:
    """Every revision deployed to NAME (* marks the one served now)."""
    data = client().deployment_revisions(name)
    emit(data, as_json, lambda d: table(
        [{**r, "revision": f"{r['revision']}{'*' if r['current'] else ''}", "model": f"{r['model']}:{r['version']}",
          "hardware": (r["hardware"] or {}).get("name"), "rollback_of": r["rollback_of"]} for r in d["items"]],
        ["revision", "model", "run_id", "hardware", "replicas", "rollback_of", "created_by", "created_at"]))


@deployments.command("rollback")
@click.argument("name")
@click.option("--revision", type=int, default=None, help="The revision to serve again (default: the previous one).")
@click.option("--wait", is_flag=True, help="Wait until it answers /ping.")
@json_option
def deployments_rollback(name: str, revision: int | None, wait: bool, as_json: bool) -> None:
    """Serve an earlier revision of NAME again (a rolling update to a new revision)."""
    api = client()
    _wait_deployment(api, api.rollback_deployment(name, revision), wait, as_json)


@deployments.command("scale")
@click.argument("name")
@click.option("--replicas", type=int, required=True, help="How many replicas (0 only on kubernetes); turns "
              "autoscaling off.")
@click.option("--wait", is_flag=True, help="Wait until it answers /ping.")
@json_option
def deployments_scale(name: str, replicas: int, wait: bool, as_json: bool) -> None:
    """Run NAME with a fixed number of replicas."""
    api = client()
    _wait_deployment(api, api.scale_deployment(name, replicas=replicas), wait, as_json)


@deployments.command("autoscale")
@click.argument("name")
@click.option("--min", "low", type=int, default=None, help="At least this many replicas.")
@click.option("--max", "high", type=int, default=None, help="At most this many replicas.")
@click.option("--target-cpu", type=int, default=None, help="Average CPU use to keep, in percent of the "
              "requested CPU (default 70).")
@click.option("--off", is_flag=True, help="Turn autoscaling off (back to the fixed replicas).")
@json_option
def deployments_autoscale(name: str, low: int | None, high: int | None, target_cpu: int | None, off: bool,
                          as_json: bool) -> None:
    """Autoscale NAME on CPU use with a HorizontalPodAutoscaler (kubernetes backend)."""
    autoscale = _autoscale_body(low, high, target_cpu)
    if off == (autoscale is not None):
        raise PlatformError("give --min and --max (and optionally --target-cpu), or --off")
    api = client()
    _wait_deployment(api, api.scale_deployment(name, autoscale=autoscale, autoscale_off=off), False, as_json)


# -- schedules ----------------------------------------------------------------
@main.group(cls=Group)
def schedules() -> None:
    """Batch prediction on a cron schedule; every firing is a recorded run."""


def schedule_summary(d: dict[str, Any]) -> str:
    state = "suspended" if d["suspended"] else f"next {d.get('next_fire_at') or '-'}"
    lines = [
        f"schedule   {d['name']} ({d['id']}, {d['backend']})",
        f"cron       {d['schedule']}" + (f"  ({d['timezone']})" if d.get("timezone") else "  (UTC)") + f"   {state}",
        f"model      {d['model']}:{d['version']}   trained by run {d['source_run_id']}",
        f"inputs     {d['inputs']}",
        f"outputs    {d['outputs']}",
        f"last       {d.get('last_fired_at') or '-'}" + (f"  run {d['last_run_id']}" if d.get("last_run_id") else ""),
    ]
    if d.get("last_error"):
        lines.append(f"error      {d['last_error']}")
    if "runs" in d:
        lines += ["", table(d["runs"], ["id", "status", "outputs", "created_at"])]
    return "\n".join(lines)


@schedules.command("create")
@click.argument("name")
@click.option("--model", "ref", required=True, help="MODEL or MODEL:VERSION (default: the latest, pinned now).")
@click.option("--source-run", "source_run", required=True, help="The succeeded training run whose artifacts to use.")
@click.option("--inputs", required=True, type=click.Path(exists=True, path_type=Path), help="Input file or folder.")
@click.option("--outputs", required=True,
              help="Output path pattern with {run_id} (each firing writes its own), optionally {date}.")
@click.option("--cron", "cron_expr", required=True, help="e.g. '0 * * * *' (minute hour day month weekday) or @daily.")
@click.option("--timezone", default=None, help="IANA time zone of the cron expression (default UTC).")
@click.option("--hardware", default=None)
@click.option("--env", "environment", default=None)
@click.option("--starting-deadline", type=int, default=None,
              help="Seconds a late firing may still start (default 300).")
@click.option("--suspended", is_flag=True, help="Create it suspended.")
@json_option
def schedules_create(name: str, ref: str, source_run: str, inputs: Path, outputs: str, cron_expr: str,
                     timezone: str | None, hardware: str | None, environment: str | None,
                     starting_deadline: int | None, suspended: bool, as_json: bool) -> None:
    """Run MODEL's batch_predict over --inputs on a cron schedule."""
    import os

    model, version = split_ref(ref)
    data = client().create_schedule(
        name, model, source_run, str(inputs.resolve()), os.path.abspath(os.path.expanduser(outputs)), cron_expr,
        version=version, hardware=hardware, environment=environment, timezone=timezone,
        starting_deadline_seconds=starting_deadline, suspended=suspended or None)
    emit(data, as_json, schedule_summary)


@schedules.command("list")
@click.option("--limit", type=int, default=None)
@click.option("--offset", type=int, default=0)
@json_option
def schedules_list(limit: int | None, offset: int, as_json: bool) -> None:
    """Your schedules (an admin: everyone's)."""
    page = client().schedules(limit=limit, offset=offset)
    emit(page, as_json, lambda p: table(
        [{**d, "model": f"{d['model']}:{d['version']}", "next": "suspended" if d["suspended"] else d["next_fire_at"]}
         for d in p["items"]], ["name", "schedule", "model", "next", "last_run_id", "owner"]))


@schedules.command("show")
@click.argument("name")
@json_option
def schedules_show(name: str, as_json: bool) -> None:
    """A schedule and its recent runs."""
    emit(client().schedule(name), as_json, schedule_summary)


@schedules.command("delete")
@click.argument("name")
@json_option
def schedules_delete(name: str, as_json: bool) -> None:
    """Stop firing; running firings are cancelled; their runs stay on record."""
    client().delete_schedule(name)
    emit({"deleted": name}, as_json, lambda d: f"deleted {d['deleted']}")


@schedules.command("suspend")
@click.argument("name")
@json_option
def schedules_suspend(name: str, as_json: bool) -> None:
    """Stop firing until resumed."""
    emit(client().suspend_schedule(name), as_json, schedule_summary)


@schedules.command("resume")
@click.argument("name")
@json_option
def schedules_resume(name: str, as_json: bool) -> None:
    """Fire again; a firing missed within the starting deadline starts at once."""
    emit(client().resume_schedule(name), as_json, schedule_summary)


# -- profiles, users ----------------------------------------------------------
@main.command()
@json_option
def profiles(as_json: bool) -> None:
    """Environments and hardware sizes you can choose."""
    data = client().get("/profiles")
    emit(data, as_json, lambda d: "environments:\n" + table(d["environments"], ["name", "display_name", "image"])
         + "\n\nhardware:\n" + table(d["hardware"], ["name", "cpu", "memory", "gpus", "cost_per_hour"]))


@main.group(cls=Group)
def users() -> None:
    """Users and API tokens (admin)."""


@users.command("create")
@click.argument("name")
@click.option("--admin", is_flag=True)
@json_option
def users_create(name: str, admin: bool, as_json: bool) -> None:
    emit(client().post("/users", {"name": name, "admin": admin}), as_json, lambda d: f"created user {d['name']}")


@users.command("token")
@click.argument("name")
@click.option("--note", default="")
@json_option
def users_token(name: str, note: str, as_json: bool) -> None:
    """Create an API token for NAME (shown once)."""
    emit(client().post(f"/users/{name}/tokens", {"note": note}), as_json, lambda d: d["token"])


# -- credentials --------------------------------------------------------------
@main.group(cls=Group)
def credentials() -> None:
    """Your credentials (GitHub token, passwords): environment variables of your runs and deployments."""


def user_option(func: Callable) -> Callable:
    return click.option("--user", default=None, help="Admins: act on this user's credentials.")(func)


def credential_value(key: str, value_stdin: bool, from_env: str | None) -> str:
    """The value from stdin, an environment variable or a hidden prompt; never from argv (shell history)."""
    import os

    if value_stdin and from_env:
        raise PlatformError("give one of --value-stdin and --from-env, not both")
    if from_env:
        if from_env not in os.environ:
            raise PlatformError(f"the environment variable {from_env} is not set")
        return os.environ[from_env]
    if value_stdin:
        value = sys.stdin.read()
        return value[:-2] if value.endswith("\r\n") else value[:-1] if value.endswith("\n") else value
    if not sys.stdin.isatty():
        raise PlatformError(f"no value for {key}: pipe it in with --value-stdin, name an environment variable "
                            "with --from-env VAR, or run in a terminal to be prompted")
    return click.prompt(f"Value of {key}", hide_input=True, confirmation_prompt=True)


@credentials.command("list")
@user_option
@json_option
def credentials_list(user: str | None, as_json: bool) -> None:
    """Names of your credentials and when each was set (values are never shown)."""
    emit(client().credentials(user), as_json, lambda d: table(d["items"], ["key", "updated_at"]))


@credentials.command("set")
@click.argument("key")
@click.option("--value-stdin", is_flag=True, help="Read the value from standard input (one final newline dropped).")
@click.option("--from-env", metavar="VAR", default=None, help="Take the value from the environment variable VAR.")
@user_option
@json_option
def credentials_set(key: str, value_stdin: bool, from_env: str | None, user: str | None, as_json: bool) -> None:
    """Set KEY (an environment variable name, e.g. GITHUB_TOKEN) for your runs and deployments.

    The value never comes from the command line (it would stay in your shell history): pipe it with
    --value-stdin, name a variable with --from-env, or type it at the hidden prompt."""
    value = credential_value(key, value_stdin, from_env)
    emit(client().set_credential(key, value, user), as_json, lambda d: f"set {d['key']} for {d['user']}")


@credentials.command("delete")
@click.argument("key")
@user_option
@json_option
def credentials_delete(key: str, user: str | None, as_json: bool) -> None:
    """Delete KEY."""
    client().delete_credential(key, user)
    emit({"deleted": key, **({"user": user} if user else {})}, as_json, lambda d: f"deleted {d['deleted']}")


@main.command()
@json_option
def whoami(as_json: bool) -> None:
    emit(client().get("/whoami"), as_json, lambda d: d["name"] + (" (admin)" if d["admin"] else ""))


# -- tensorboard ----------------------------------------------------------------
# The Jupyter server's mlplatform extension checks with the platform that the user may see the run,
# then serves one TensorBoard per run at {base}mlplatform/tensorboard/<run>/ (tensorboard.py).
def _jupyter_url(given: str | None) -> str:
    import os
    from urllib.parse import urlsplit

    url = given or os.environ.get("MLP_JUPYTER_URL") or os.environ.get("JUPYTERHUB_SERVICE_URL")
    if not url:
        raise click.UsageError("no Jupyter server: pass --jupyter-url URL (the server's base URL, e.g. "
                               "http://127.0.0.1:8888/) or set MLP_JUPYTER_URL; inside a hub notebook "
                               "server JUPYTERHUB_SERVICE_URL is used")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"expected an http(s) URL, got {url!r}", param_hint="--jupyter-url")
    return url


@main.command()
@click.argument("run")
@click.option("--jupyter-url", default=None, help="Base URL of your Jupyter server (default: $MLP_JUPYTER_URL, "
              "or $JUPYTERHUB_SERVICE_URL in a hub notebook server).")
@click.option("--jupyter-token", default=None, help="Its token (default: $MLP_JUPYTER_TOKEN, or "
              "$JUPYTERHUB_API_TOKEN in a hub notebook server).")
@click.option("--no-start", is_flag=True, help="Print the URL without starting TensorBoard (the first visit does).")
@json_option
def tensorboard(run: str, jupyter_url: str | None, jupyter_token: str | None, no_start: bool,
                as_json: bool) -> None:
    """Open RUN's logs (its artifacts/logs folder, else its artifacts) in TensorBoard; print the URL.

    $MLP_PUBLIC_URL (set by the hub's spawners) is the origin printed when it differs from the one
    this command reaches."""
    import os
    from urllib.parse import urlsplit

    jupyter = JupyterClient(_jupyter_url(jupyter_url), jupyter_token or os.environ.get("MLP_JUPYTER_TOKEN")
                            or os.environ.get("JUPYTERHUB_API_TOKEN") or "")
    try:
        answer = jupyter.open_tensorboard(run, start=not no_start)
    finally:
        jupyter.close()
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(jupyter.url))
    public = os.environ.get("MLP_PUBLIC_URL", "").rstrip("/") or origin
    data = {"run": run, "url": public + answer["url"], "logdir": answer.get("logdir"), "started": not no_start}
    emit(data, as_json, lambda d: d["url"])


if __name__ == "__main__":  # pragma: no cover
    main()
