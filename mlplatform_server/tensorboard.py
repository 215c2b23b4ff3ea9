"""TensorBoard beside notebooks, through jupyter-server-proxy (README "TensorBoard").

- :func:`launcher_server` is the ``jupyter_serverproxy_servers`` entry point ``tensorboard``: a
  JupyterLab launcher item (``{base}tensorboard/``) that starts TensorBoard on the user's log
  directory. The item is shown when the notebook server's environment has ``tensorboard: true``
  (the spawners set ``MLP_TENSORBOARD=1``); the route works either way.
- :class:`RunTensorBoardHandler` serves ``{base}mlplatform/tensorboard/<run>/``: one TensorBoard
  per run on that run's artifacts (``artifacts/logs`` when there is one), started on first use by
  jupyter-server-proxy's supervisor and proxied by it. The run is looked up through the platform
  API with the user's own token first, so a user opens only runs they may see. The artifacts are
  read where they lie when this server sees the platform's data directory (one machine), else
  copied through the API with the same token into the user's cache (tensorboard_sync.py).
  ``POST {base}mlplatform/tensorboards {"run"}`` checks the same and answers the URL
  (``mlp tensorboard RUN``).
"""

from __future__ import annotations

import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from jupyter_server_proxy.handlers import SuperviseAndProxyHandler
from tornado import web

from .extension import BaseHandler, ExtensionError, MLPlatformApp
from .tensorboard_sync import sync_run

LOGDIR_ENV = "MLP_TENSORBOARD_LOGDIR"
ENABLED_ENV = "MLP_TENSORBOARD"
START_TIMEOUT = 120.0  # seconds: TensorBoard imports slowly on a busy machine
FINISHED = ("succeeded", "failed", "cancelled")
RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_ICON = Path(__file__).with_name("tensorboard.svg")


def tensorboard_command(logdir: str | Path, port: int) -> list[str]:
    return [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir), "--port", str(port),
            "--host", "127.0.0.1", "--reload_interval", "5"]


def user_logdir() -> Path:
    """The user's log directory: ``$MLP_TENSORBOARD_LOGDIR``, else ``logs`` in the server's folder."""
    return Path(os.environ.get(LOGDIR_ENV) or "logs").expanduser().resolve()


def launcher_enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "").strip().lower() in ("1", "true", "yes")


def launcher_server() -> dict[str, Any]:
    """jupyter-server-proxy's server config for the ``tensorboard`` entry point."""
    def command(port: int) -> list[str]:
        logdir = user_logdir()
        logdir.mkdir(parents=True, exist_ok=True)
        # jupyter-server-proxy formats every item with {port}: a brace in the path must survive
        return [a.replace("{", "{{").replace("}", "}}") for a in tensorboard_command(logdir, port)]

    entry: dict[str, Any] = {"enabled": launcher_enabled(), "title": "TensorBoard", "category": "Notebook"}
    if _ICON.is_file():
        entry["icon_path"] = str(_ICON)
    return {"command": command, "timeout": START_TIMEOUT, "new_browser_tab": False,
            "launcher_entry": entry}


# -- one TensorBoard per run ---------------------------------------------------------
def run_path(ext: MLPlatformApp, run: str) -> str:
    assert ext.serverapp is not None
    return url_path_join(ext.serverapp.base_url, "mlplatform", "tensorboard", run) + "/"


def artifacts_root(ext: MLPlatformApp) -> Path:
    """The platform's data directory as this server sees it (a shared file system off one machine)."""
    if ext.platform is not None:
        return Path(ext.platform.settings.data_dir)
    return Path(ext.options.data_dir).expanduser()


async def resolve_run_logdir(ext: MLPlatformApp, run: str, refresh: bool = True) -> Path:
    """The run's log directory, after the platform said this user may see the run: on this file
    system when the run's artifacts are here (one machine), else synced through the API into the
    user's cache (tensorboard_sync.py; ``refresh``: an open, which syncs a running run again).
    Raises ``web.HTTPError`` (404 unknown run or no TensorBoard files, 502 platform unreachable)."""
    if not RUN_ID.match(run):
        raise web.HTTPError(400, f"{run!r} is not a run id (letters, digits, '_', '.', '-')")
    try:
        response = await ext.fetch(ext.platform_request("GET", f"runs/{run}", timeout=30))
    except ExtensionError as exc:
        raise web.HTTPError(exc.status, exc.message) from None
    if response.code != 200:
        try:
            message = json.loads(response.body)["message"]
        except (ValueError, KeyError, TypeError):
            message = f"the platform answered HTTP {response.code}"
        raise web.HTTPError(404 if response.code in (403, 404) else 502, message)
    artifacts = artifacts_root(ext) / "runs" / run / "artifacts"
    if artifacts.is_dir():
        logs = artifacts / "logs"
        return logs if logs.is_dir() else artifacts
    try:
        finished = json.loads(response.body).get("status") in FINISHED
    except (ValueError, AttributeError):
        finished = False
    return await sync_run(ext, run, finished=finished, refresh=refresh)


class RunTensorBoardHandler(SuperviseAndProxyHandler):
    """``{base}mlplatform/tensorboard/<run>/<path>``: that run's TensorBoard (started on demand)."""

    def initialize(self, ext: MLPlatformApp) -> None:  # type: ignore[override]
        self.ext = ext
        self.logdir: Path | None = None

    async def prepare(self) -> None:  # type: ignore[override]
        result = super().prepare()
        if result is not None:
            await result
        if self._finished:
            return
        run = self.path_args[0]
        if self.current_user is None:
            raise web.HTTPError(403)
        # the page itself is an open (a running run's files are synced again); its data requests are not
        self.logdir = await resolve_run_logdir(self.ext, run, refresh=self.path_args[1] in ("", "/"))
        super().initialize(self.ext.tensorboard_states.setdefault(run, {}))
        self.name = f"tensorboard-{run}"
        self.proxy_base = f"mlplatform/tensorboard/{run}"

    def get_cmd(self) -> list[str]:
        assert self.logdir is not None
        return tensorboard_command(self.logdir, self.port)

    def get_timeout(self) -> float:
        return START_TIMEOUT

    # the URL holds (run, path): the run is read in prepare(), the proxy wants the path alone
    async def http_get(self, run: str, path: str) -> Any:  # type: ignore[override]
        return await super().http_get(path)

    async def open(self, run: str, path: str) -> Any:  # type: ignore[override]
        return await super().open(path)

    def post(self, run: str, path: str) -> Any:  # type: ignore[override]
        return self.proxy(self.port, path)

    def head(self, run: str, path: str) -> Any:  # type: ignore[override]
        return self.proxy(self.port, path)

    def put(self, run: str, path: str) -> Any:  # type: ignore[override]
        return self.proxy(self.port, path)

    def delete(self, run: str, path: str) -> Any:  # type: ignore[override]
        return self.proxy(self.port, path)

    def patch(self, run: str, path: str) -> Any:  # type: ignore[override]
        return self.proxy(self.port, path)

    def options(self, run: str, path: str) -> Any:  # type: ignore[override]
        return self.proxy(self.port, path)


class TensorBoardOpenHandler(BaseHandler):
    """``POST {"run"}`` → ``{"run", "url", "logdir"}``: the path of the run's TensorBoard, once the
    platform said the user may see the run and its files are here (local, or synced now)."""

    @web.authenticated
    @authorized
    async def post(self) -> None:
        run = self.json_body().get("run")
        if not isinstance(run, str) or not run:
            raise ExtensionError(400, "invalid_input", "'run' (a run id) is required")
        try:
            logdir = await resolve_run_logdir(self.ext, run)
        except web.HTTPError as exc:
            error = {400: "invalid_input", 404: "not_found", 501: "not_supported"}.get(exc.status_code,
                                                                                       "platform_unreachable")
            raise ExtensionError(exc.status_code, error, exc.log_message or "") from None
        self.send_json({"run": run, "url": run_path(self.ext, run), "logdir": str(logdir)})


def handlers(ext: MLPlatformApp) -> list[tuple[str, type, dict[str, Any]]]:
    kwargs = {"ext": ext}
    return [
        (r"/mlplatform/tensorboards", TensorBoardOpenHandler, kwargs),
        (r"/mlplatform/tensorboard/([^/]+)(/.*|)", RunTensorBoardHandler, kwargs),
    ]
