"""The Jupyter server extension: runs in the researcher's own Jupyter server.

It reads notebooks through Jupyter's contents manager, adds what only the
notebook's machine knows (the git commit of its folder), and relays to the
platform REST API with the platform token. With no ``MLPlatform.platform_url``
it starts the platform API in-process (embedded defaults) on a free loopback
port, in the same event loop, and relays to that.

Routes (under ``{base_url}mlplatform/``, Jupyter-authenticated, JSON errors):

- ``GET  config``    the platform URL, whether it runs in-process, and who we are there
- ``POST inspect``   ``{"path"}``: what saving this notebook would find
- ``POST models``    ``{"path", "name", "version"?}``: save it as a model version
- ``POST invoke/<deployment>``  JSON posted to that deployment's ``/invocations`` (extension_invoke.py)
- ``GET|POST|DELETE api/<path>``  relayed to ``{platform}/api/v1/<path>`` unchanged
  (``runs/<id>/logs?follow=true`` streams)

Every call to the platform goes through tornado's non-blocking client: the
in-process platform shares this event loop, so a blocking call would deadlock.
The platform token is never logged nor returned.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import re
import subprocess
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

from jupyter_core.utils import ensure_async
from jupyter_server.auth.decorator import authorized
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.utils import url_path_join
from tornado import httpclient, web
from tornado.iostream import StreamClosedError
from traitlets import CaselessStrEnum, Unicode, default
from traitlets.config import Configurable

NAMESPACE = "mlplatform"
RELAY_TIMEOUT = 300.0  # seconds for an ordinary relayed request (saving builds nothing; submit is quick)
# Relayed chunk by chunk: logs (followed while a run runs) and artifact files (any size, never held in memory).
_STREAMED_PATH = re.compile(r"^runs/[^/]+/(logs/?|artifacts/.+)$")


# -- configuration -------------------------------------------------------------
class MLPlatform(Configurable):
    """Where the Jupyter extension finds the platform (config section ``MLPlatform``)."""

    platform_url = Unicode(
        help="URL of the platform API (e.g. http://mlp.example.org). Empty: start the platform "
        "in-process inside this Jupyter server, with the embedded defaults. Default: $MLP_URL.",
    ).tag(config=True)

    platform_token = Unicode(
        help="API token sent to the platform as 'Authorization: Bearer'. In-process, used as the "
        "platform's admin token when set (else the one kept in data_dir). Default: $MLP_TOKEN.",
    ).tag(config=True)

    data_dir = Unicode(
        help="Data directory of the in-process platform (database, models, runs, artifacts). "
        "Default: $MLP_DATA_DIR or ~/.local/share/mlplatform.",
    ).tag(config=True)

    backend = CaselessStrEnum(
        ["auto", "process", "docker"],
        help="Backend of the in-process platform: docker when a Docker-compatible engine answers "
        "(auto), the docker engine, or plain subprocesses. Default: $MLP_BACKEND or auto.",
    ).tag(config=True)

    config_file = Unicode(
        help="platform.yaml of the in-process platform (environments, hardware sizes). "
        "Default: $MLP_CONFIG; empty for the built-in defaults.",
    ).tag(config=True)

    db_url = Unicode(
        help="SQLAlchemy URL of the in-process platform's database. Default: $MLP_DB_URL; "
        "empty for SQLite in data_dir.",
    ).tag(config=True)

    @default("platform_url")
    def _default_platform_url(self) -> str:
        return os.environ.get("MLP_URL", "")

    @default("platform_token")
    def _default_platform_token(self) -> str:
        return os.environ.get("MLP_TOKEN", "")

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.environ.get("MLP_DATA_DIR") or str(Path("~/.local/share/mlplatform").expanduser())

    @default("backend")
    def _default_backend(self) -> str:
        value = os.environ.get("MLP_BACKEND", "auto").strip().lower() or "auto"
        return value if value in ("auto", "process", "docker") else "auto"

    @default("config_file")
    def _default_config_file(self) -> str:
        return os.environ.get("MLP_CONFIG", "")

    @default("db_url")
    def _default_db_url(self) -> str:
        return os.environ.get("MLP_DB_URL", "")


MLPlatformConfig = MLPlatform  # the Configurable's name as documented; its config section is MLPlatform


# -- errors --------------------------------------------------------------------
class ExtensionError(Exception):
    """An answer of this extension's own: HTTP status plus ``{"error", "message"}``."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message


def _unreachable(url: str, exc: BaseException | str) -> ExtensionError:
    detail = exc if isinstance(exc, str) else f"{exc.__class__.__name__}: {exc}"
    return ExtensionError(502, "platform_unreachable", f"Cannot reach the platform API at {url}: {detail}")


# -- the extension app ---------------------------------------------------------
class MLPlatformApp(ExtensionApp):
    """Registers the handlers; owns the in-process platform and its HTTP server when there is one."""

    name = NAMESPACE
    load_other_extensions = True

    def initialize_settings(self) -> None:
        assert self.serverapp is not None
        self.options = MLPlatform(parent=self)  # the server's config and jupyter_mlplatform_config
        self.platform = None
        self._http_server = None
        self.startup_error: str | None = None
        self.in_process = not self.options.platform_url.strip()
        self.platform_url = self.options.platform_url.strip().rstrip("/")
        self.token = self.options.platform_token
        self.http = httpclient.AsyncHTTPClient(force_instance=True, max_clients=64)
        if self.in_process:
            try:
                self._start_in_process()
            except Exception as exc:  # the notebook server keeps working; our routes answer 503
                self.startup_error = f"{exc.__class__.__name__}: {exc}"
                self.log.error("mlplatform | the in-process platform did not start: %s", self.startup_error)
        else:
            self.log.info("mlplatform | relaying to the platform API at %s", self.platform_url)

    def _start_in_process(self) -> None:
        from tornado.httpserver import HTTPServer
        from tornado.netutil import bind_sockets

        from .api.app import make_app
        from .server import ServerOptions, _redact, build_platform

        # Bind first: the port is known (and ours) before the platform records its own URL.
        sockets = bind_sockets(0, "127.0.0.1")
        try:
            port = sockets[0].getsockname()[1]
            options = ServerOptions(
                data_dir=Path(self.options.data_dir).expanduser(),
                host="127.0.0.1",
                port=port,
                backend=self.options.backend,
                db_url=self.options.db_url or None,
                config=Path(self.options.config_file).expanduser() if self.options.config_file else None,
                admin_token=self.options.platform_token or None,
            )
            platform = build_platform(options)
            server = HTTPServer(make_app(platform))
            server.add_sockets(sockets)
        except BaseException:
            for sock in sockets:
                sock.close()
            raise
        self.platform = platform
        self._http_server = server
        self.platform_url = f"http://127.0.0.1:{port}"
        self.token = platform.settings.admin_token
        self.log.info(
            "mlplatform | in-process platform API on %s/api/v1 (backend %s, data %s, db %s)",
            self.platform_url,
            platform.backend.name,
            platform.settings.data_dir,
            _redact(platform.settings.db_url),
        )
        try:
            asyncio.get_running_loop()
        except RuntimeError:  # loaded before the loop runs: start once it does
            assert self.serverapp is not None
            self.serverapp.io_loop.add_callback(self.ensure_started)
        else:
            self.ensure_started()

    def ensure_started(self) -> None:
        """Start the platform's reconciler (idempotent; needs the running loop)."""
        if self.platform is not None:
            self.platform.start()

    async def _start_jupyter_server_extension(self, serverapp) -> None:  # type: ignore[override]
        self.ensure_started()

    def initialize_handlers(self) -> None:
        from .extension_invoke import InvokeHandler  # the Lab's "try it" box

        kwargs = {"ext": self}
        self.handlers.extend(
            [
                (rf"/{NAMESPACE}/config", ConfigHandler, kwargs),
                (rf"/{NAMESPACE}/invoke/([^/]+)", InvokeHandler, kwargs),
                (rf"/{NAMESPACE}/inspect", InspectHandler, kwargs),
                (rf"/{NAMESPACE}/models", SaveModelHandler, kwargs),
                (rf"/{NAMESPACE}/api/(.*)", RelayHandler, kwargs),
            ]
        )
        # TensorBoard per run (tensorboard.py), where jupyter-server-proxy is installed
        self.tensorboard_states: dict[str, dict] = {}
        self.tensorboard_syncs: dict[str, Any] = {}  # run → tensorboard_sync.RunSync (API-synced logs)
        try:
            from .tensorboard import handlers as tensorboard_handlers
        except ImportError as exc:
            self.log.info("mlplatform | no per-run TensorBoard: %s", exc)
        else:
            self.handlers.extend(tensorboard_handlers(self))

    async def stop_extension(self) -> None:
        server, platform = self._http_server, self.platform
        self._http_server = self.platform = None
        if server is not None:
            server.stop()
            try:
                await asyncio.wait_for(server.close_all_connections(), 5)
            except (asyncio.TimeoutError, Exception):
                pass
        if platform is not None:
            try:
                await platform.stop()
            except Exception:
                self.log.exception("mlplatform | stopping the in-process platform")
        self.http.close()

    # -- calling the platform ------------------------------------------------
    def platform_request(
        self,
        method: str,
        path: str,
        query: str = "",
        body: bytes | None = None,
        streaming_callback=None,
        header_callback=None,
        timeout: float = RELAY_TIMEOUT,
    ) -> httpclient.HTTPRequest:
        if self.startup_error is not None:
            raise ExtensionError(
                503, "platform_unavailable", f"The in-process platform did not start: {self.startup_error}"
            )
        if not self.platform_url:
            raise ExtensionError(503, "platform_unavailable", "No platform URL is configured")
        url = f"{self.platform_url}/api/v1/{path.lstrip('/')}"
        if query:
            url += "?" + query
        headers = {"Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        if body is not None:
            headers["Content-Type"] = "application/json"
        elif method in ("POST", "PUT", "PATCH"):
            body = b""
        return httpclient.HTTPRequest(
            url,
            method=method,
            headers=headers,
            body=body,
            streaming_callback=streaming_callback,
            header_callback=header_callback,
            request_timeout=timeout,
            connect_timeout=10,
            follow_redirects=False,
            decompress_response=True,
        )

    async def fetch(self, request: httpclient.HTTPRequest) -> httpclient.HTTPResponse:
        """The platform's answer whatever its status; ExtensionError 502 when it cannot be reached."""
        self.ensure_started()
        try:
            response = await self.http.fetch(request, raise_error=False)
        except httpclient.HTTPClientError as exc:
            if exc.response is not None and exc.code != 599:
                return exc.response
            raise _unreachable(self.platform_url, exc.message or str(exc)) from None
        except (OSError, StreamClosedError, asyncio.TimeoutError) as exc:
            raise _unreachable(self.platform_url, exc) from None
        if response.code == 599:
            raise _unreachable(self.platform_url, response.error or "no answer")
        return response


# -- handlers ------------------------------------------------------------------
class BaseHandler(APIHandler):
    auth_resource = NAMESPACE

    def initialize(self, ext: MLPlatformApp) -> None:  # type: ignore[override]
        self.ext = ext

    # -- input ---------------------------------------------------------------
    def json_body(self) -> dict[str, Any]:
        try:
            body = json.loads(self.request.body or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise ExtensionError(400, "invalid_input", f"Request body is not valid JSON: {exc}") from None
        if not isinstance(body, dict):
            raise ExtensionError(400, "invalid_input", "Request body must be a JSON object")
        return body

    async def read_source(self, path: Any) -> tuple[str, str]:
        """(text, api path) of a notebook (.ipynb) or module (.py) read through the contents manager."""
        if not isinstance(path, str) or not path.strip():
            raise ExtensionError(400, "invalid_input", "'path' (the notebook's path in Jupyter) is required")
        path = path.strip().lstrip("/")
        if not path.endswith((".ipynb", ".py")):
            raise ExtensionError(
                400, "invalid_input", f"'path' must be a notebook (.ipynb) or a .py file, got {path!r}"
            )
        cm = self.contents_manager
        try:
            if path.endswith(".ipynb"):
                model = await ensure_async(cm.get(path, content=True, type="notebook"))
            else:
                model = await ensure_async(cm.get(path, content=True, type="file", format="text"))
        except web.HTTPError as exc:
            if exc.status_code == 404:
                raise ExtensionError(404, "not_found", f"No notebook at {path!r}") from None
            if 400 <= exc.status_code < 500:
                raise ExtensionError(exc.status_code, "invalid_input",
                                     f"Cannot read {path!r}: {exc.log_message or exc.reason}") from None
            raise
        if path.endswith(".ipynb"):
            import nbformat

            return nbformat.writes(nbformat.from_dict(model["content"])), path
        content = model.get("content")
        if not isinstance(content, str):
            raise ExtensionError(400, "invalid_input", f"{path!r} is not a text file")
        return content, path

    # -- output --------------------------------------------------------------
    def send_json(self, data: Any, status: int = 200) -> None:
        self.set_status(status)
        self.finish(json.dumps(data))

    def relay_response(self, response: httpclient.HTTPResponse) -> None:
        """The platform's status and body, unchanged."""
        self.set_status(response.code, response.reason or None)
        ctype = response.headers.get("Content-Type", "application/json")
        if response.code in (204, 304) or not response.body:
            self.finish(set_content_type=ctype)
        else:
            self.finish(response.body, set_content_type=ctype)

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        if isinstance(exc, ExtensionError):
            self.set_status(exc.status)
            body = {"error": exc.error, "message": exc.message}
        elif isinstance(exc, web.HTTPError):
            message = exc.log_message or exc.reason or self._reason
            if exc.args and exc.log_message and "%" in exc.log_message:
                try:
                    message = exc.log_message % exc.args
                except (TypeError, ValueError):
                    pass
            error = {401: "unauthorized", 403: "forbidden", 404: "not_found"}.get(status_code, "http_error")
            body = {"error": error, "message": message}
        else:
            error_id = uuid.uuid4().hex[:12]
            self.log.error("mlplatform | internal error %s", error_id, exc_info=kwargs.get("exc_info"))
            body = {"error": "internal", "message": f"Internal error (error id {error_id})", "error_id": error_id}
        self.finish(json.dumps(body))

    def log_exception(self, typ, value, tb) -> None:  # type: ignore[override]
        if isinstance(value, ExtensionError):
            self.log.info("mlplatform | %s %s → %s: %s", self.request.method, self.request.path, value.status,
                          value.message)
        else:
            super().log_exception(typ, value, tb)

    async def call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> httpclient.HTTPResponse:
        body = json.dumps(payload).encode() if payload is not None else None
        return await self.ext.fetch(self.ext.platform_request(method, path, body=body))


class ConfigHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def get(self) -> None:
        response = await self.call("GET", "whoami")
        if response.code != 200:
            return self.relay_response(response)
        user = json.loads(response.body)
        self.send_json({"platform_url": self.ext.platform_url, "in_process": self.ext.in_process, "user": user})


class InspectHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        source, path = await self.read_source(body.get("path"))
        response = await self.call("POST", "contract/inspect", {"source": source, "filename": posixpath.basename(path)})
        self.relay_response(response)


class SaveModelHandler(BaseHandler):
    @web.authenticated
    @authorized
    async def post(self) -> None:
        body = self.json_body()
        name, version = body.get("name"), body.get("version")
        if not isinstance(name, str) or not name:
            raise ExtensionError(400, "invalid_input", "'name' (the model name) is required")
        if version is not None and not isinstance(version, str):
            raise ExtensionError(400, "invalid_input", "'version' must be a string")
        source, path = await self.read_source(body.get("path"))
        payload: dict[str, Any] = {
            "name": name,
            "version": version,
            "source": source,
            "filename": posixpath.basename(path),
        }
        commit = await self.git_commit(path)
        if commit:
            payload["git_commit"] = commit
        self.relay_response(await self.call("POST", "models", payload))

    async def git_commit(self, path: str) -> str | None:
        root = getattr(self.contents_manager, "root_dir", None)
        if not root:
            return None
        parent = posixpath.dirname(path)
        folder = os.path.join(root, *[p for p in parent.split("/") if p])
        return await asyncio.get_running_loop().run_in_executor(None, _git_head, folder)


def _git_head(folder: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", folder, "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = proc.stdout.strip()
    if proc.returncode != 0 or not re.fullmatch(r"[0-9a-f]{40}([0-9a-f]{24})?", commit):
        return None
    return commit


class RelayHandler(BaseHandler):
    """``{base}mlplatform/api/<path>`` → ``{platform}/api/v1/<path>``: same query and body, same answer."""

    def _platform_path(self) -> str:
        # The raw (still percent-encoded) path: what the browser sent is what the platform gets.
        prefix = url_path_join(self.base_url, NAMESPACE, "api") + "/"
        raw = self.request.path
        rest = raw[len(prefix):] if raw.startswith(prefix) else raw.split(f"/{NAMESPACE}/api/", 1)[-1]
        segments = rest.split("/")
        if any(s in (".", "..") for s in segments):
            raise ExtensionError(400, "invalid_input", "Path segments '.' and '..' are not allowed")
        return "/".join(quote(s, safe="%:@!$&'()*+,;=-._~") for s in segments)

    async def _relay(self, method: str) -> None:
        path = self._platform_path()
        body = self.request.body if method in ("POST", "PUT") else None
        if method in ("POST", "PUT") and not body:
            body = b"{}"
        if method == "GET" and _STREAMED_PATH.match(path):
            return await self._relay_stream(path)
        request = self.ext.platform_request(method, path, query=self.request.query, body=body)
        self.relay_response(await self.ext.fetch(request))

    async def _relay_stream(self, path: str) -> None:
        """The platform's answer chunk by chunk as it comes: log text (``?follow=true`` runs until the run
        ends) or an artifact file's bytes."""
        state: dict[str, Any] = {"status": None, "ctype": None, "started": False}

        def on_header(line: str) -> None:
            if line.startswith("HTTP/"):
                parts = line.split(" ", 2)
                state["status"] = int(parts[1])
                state["reason"] = parts[2].strip() if len(parts) > 2 else None
            elif line.lower().startswith("content-type:"):
                state["ctype"] = line.split(":", 1)[1].strip()
            elif line.lower().startswith("content-disposition:"):
                state["disposition"] = line.split(":", 1)[1].strip()

        def on_chunk(chunk: bytes) -> None:
            if self.request.connection is None or self._finished or getattr(self, "_client_gone", False):
                raise StreamClosedError()  # aborts the upstream request
            if not state["started"]:
                state["started"] = True
                self.set_status(state["status"] or 200, state.get("reason"))
                self.set_header("Content-Type", state["ctype"] or "text/plain; charset=UTF-8")
                if state.get("disposition"):
                    self.set_header("Content-Disposition", state["disposition"])
            self.write(chunk)
            self.flush()

        request = self.ext.platform_request(
            "GET", path, query=self.request.query, streaming_callback=on_chunk, header_callback=on_header, timeout=0
        )
        try:
            response = await self.ext.fetch(request)
        except ExtensionError:
            if state["started"]:  # the stream broke midway: nothing better to do than end it
                if not self._finished:
                    self.finish(set_content_type=state["ctype"] or "text/plain; charset=UTF-8")
                return
            raise
        if getattr(self, "_client_gone", False) or self._finished:
            return
        if not state["started"]:
            self.set_status(response.code, response.reason or None)
            self.finish(set_content_type=response.headers.get("Content-Type", "text/plain; charset=UTF-8"))
            return
        self.finish(set_content_type=state["ctype"] or "text/plain; charset=UTF-8")

    def on_connection_close(self) -> None:
        self._client_gone = True
        super().on_connection_close()

    @web.authenticated
    @authorized
    async def get(self, _path: str) -> None:
        await self._relay("GET")

    @web.authenticated
    @authorized
    async def post(self, _path: str) -> None:
        await self._relay("POST")

    @web.authenticated
    @authorized
    async def delete(self, _path: str) -> None:
        await self._relay("DELETE")

    @web.authenticated
    @authorized
    async def put(self, _path: str) -> None:  # e.g. credentials/KEY
        await self._relay("PUT")


# -- entry points ----------------------------------------------------------------
def load_jupyter_server_extension(server_app) -> MLPlatformApp:
    """Load the extension into a running ServerApp (jupyter_server 2 calls this through MLPlatformApp)."""
    return MLPlatformApp._load_jupyter_server_extension(server_app)


_load_jupyter_server_extension = load_jupyter_server_extension


def _jupyter_server_extension_points():
    return [{"module": "mlplatform_server.extension", "app": MLPlatformApp}]
