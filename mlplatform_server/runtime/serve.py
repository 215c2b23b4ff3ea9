"""serve: the model as a web service (tornado only).

``GET /ping`` answers 200 ``{"status": "ok"}`` once ``init_predict`` has run in this worker
(503 ``{"status": "loading"}`` before). ``POST /invocations`` takes a JSON body, calls
``model.predict(body)`` and answers its JSON-serialized return value.

Threading: the module is imported and ``Model()`` built on the main thread before the
worker answers; ``init_predict`` and every ``predict`` then run on ONE dedicated executor
thread per worker process (the same thread, so thread-bound state such as a framework
session stays valid). Predictions in a worker therefore run one at a time, in order, like
gunicorn's sync worker, while the IOLoop stays free to answer ``/ping`` and to shut down.

Workers: ``MLP_WORKERS=1`` serves in this process. With more, the sockets are bound here,
then ``tornado.process.fork_processes(n)`` forks the workers; each imports the module,
builds the model and calls ``init_predict`` itself (nothing of the user's is loaded before
the fork). A worker that crashes is restarted by tornado; a worker whose model cannot be
loaded or initialized stops the whole server with that exit code instead of crash-looping.

Shutdown: on SIGTERM or SIGINT a worker stops accepting connections, lets in-flight requests
finish (at most ``MLP_STOP_GRACE_SECONDS``, default 30), then exits 0. The parent of several workers closes a
"lifeline" pipe whose read end every worker watches: end of file (also when the parent is
killed outright) makes each worker shut down the same way; the parent exits when they have.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from typing import Any

import tornado.httpserver
import tornado.netutil
import tornado.process
import tornado.web

from ..errors import PlatformError
from .context import RuntimeConfig, build_model, describe_exception, load_module, method, one_line
from .metrics import MetricReporter

log = logging.getLogger("mlplatform.runtime.serve")

GRACE_SECONDS = 30.0  # default of MLP_STOP_GRACE_SECONDS


def _grace() -> float:
    try:
        return max(0.0, float(os.environ.get("MLP_STOP_GRACE_SECONDS", GRACE_SECONDS)))
    except ValueError:
        return GRACE_SECONDS
EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_SETUP_ERROR = 2


class _StartupError(Exception):
    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


# -- HTTP -------------------------------------------------------------------
class _State:
    def __init__(self) -> None:
        self.model: Any = None
        self.ready = False
        self.stopping = False
        self.inflight = 0
        self.executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlp-predict")


def _json_default(obj: Any) -> Any:
    """numpy scalars and arrays (and anything else with ``tolist``/``item``) become JSON."""
    for attr in ("tolist", "item"):
        fn = getattr(obj, attr, None)
        if callable(fn):
            try:
                return fn()
            except Exception:
                continue
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


class _Handler(tornado.web.RequestHandler):
    def initialize(self, state: _State) -> None:
        self.state = state
        self._counted = False

    def set_default_headers(self) -> None:
        self.set_header("Content-Type", "application/json; charset=UTF-8")

    def prepare(self) -> None:
        self.state.inflight += 1
        self._counted = True
        if self.state.stopping:
            self.set_header("Connection", "close")

    def _done(self) -> None:
        if self._counted:
            self._counted = False
            self.state.inflight -= 1

    def on_finish(self) -> None:
        self._done()

    def on_connection_close(self) -> None:
        self._done()

    def send(self, status: int, body: dict[str, Any]) -> None:
        self.set_status(status)
        self.finish(json.dumps(body))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        # Never a traceback to the client, whatever went wrong.
        reason = self._reason or "error"
        code = "_".join(reason.lower().replace("-", " ").split())
        if status_code >= 500 and "exc_info" in kwargs:
            error_id = uuid.uuid4().hex
            log.error("unexpected error handling %s %s [error_id=%s]", self.request.method, self.request.path,
                      error_id, exc_info=kwargs["exc_info"])
            body = {"error": "internal", "message": "internal server error; see the server logs", "error_id": error_id}
        else:
            body = {"error": code, "message": f"{status_code} {reason}: {self.request.method} {self.request.path}"}
        self.finish(json.dumps(body))


class PingHandler(_Handler):
    def get(self) -> None:
        if self.state.ready:
            self.send(200, {"status": "ok"})
        else:
            self.send(503, {"status": "loading"})


class InvocationsHandler(_Handler):
    async def post(self) -> None:
        if not self.state.ready:
            self.send(503, {"error": "not_ready", "message": "The model is still loading (init_predict is running)"})
            return
        raw = self.request.body
        if not raw.strip():
            self.send(400, {"error": "invalid_json", "message": "Request body is not valid JSON: the body is empty"})
            return
        try:
            payload = json.loads(raw)
        except ValueError as exc:  # includes UnicodeDecodeError
            self.send(400, {"error": "invalid_json", "message": f"Request body is not valid JSON: {exc}"})
            return
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.state.executor, self.state.model.predict, payload)
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # noqa: BLE001 - user code; SystemExit too
            error_id = uuid.uuid4().hex
            log.error("predict raised an exception [error_id=%s]\n%s", error_id,
                      "".join(traceback.format_exception(exc)).rstrip())
            self.send(500, {"error": "prediction_failed",
                            "message": "predict raised an exception; see the server logs", "error_id": error_id})
            return
        try:
            text = json.dumps(result, default=_json_default)
        except (TypeError, ValueError, RecursionError) as exc:
            error_id = uuid.uuid4().hex
            log.error("predict returned a value that is not JSON-serializable [error_id=%s]: %s", error_id,
                      describe_exception(exc))
            self.send(500, {"error": "invalid_prediction",
                            "message": f"predict returned a value that is not JSON-serializable "
                                       f"({type(result).__name__}); see the server logs",
                            "error_id": error_id})
            return
        self.set_status(200)
        self.finish(text)


class NotFoundHandler(_Handler):
    def prepare(self) -> None:
        super().prepare()
        self.send(404, {"error": "not_found",
                        "message": f"No route for {self.request.method} {self.request.path}; "
                                   "this server answers GET /ping and POST /invocations"})


def _log_request(handler: tornado.web.RequestHandler) -> None:
    status = handler.get_status()
    if handler.request.path == "/ping" and status < 400:
        return  # health checks would drown the log
    level = logging.INFO if status < 400 else logging.WARNING if status < 500 else logging.ERROR
    log.log(level, "%s %s %d %.1fms", handler.request.method, handler.request.uri, status,
            1000.0 * handler.request.request_time())


def make_app(state: _State) -> tornado.web.Application:
    return tornado.web.Application(
        [(r"/ping", PingHandler, {"state": state}), (r"/invocations", InvocationsHandler, {"state": state})],
        default_handler_class=NotFoundHandler,
        default_handler_args={"state": state},
        log_function=_log_request,
    )


def _say(line: str, stream: Any = None) -> None:
    """One line in one write, so that the lines of several workers do not interleave."""
    stream = stream or sys.stdout
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


# -- a worker -----------------------------------------------------------------
def _build(config: RuntimeConfig, reporter: MetricReporter) -> Any:
    try:
        module = load_module(config.module_path)
        model = build_model(module, config, reporter.log_metric)
        method(model, "predict")
    except PlatformError as exc:
        raise _StartupError(EXIT_SETUP_ERROR, one_line(exc.message)) from None
    except (Exception, SystemExit) as exc:  # the user's __init__
        traceback.print_exc(file=sys.stderr)
        raise _StartupError(EXIT_USER_ERROR, f"Model() raised {describe_exception(exc)}") from None
    return model


def _init_predict(model: Any) -> None:
    init = method(model, "init_predict", required=False)
    if init is None:
        return
    try:
        init()
    except BaseException as exc:  # noqa: BLE001 - user code, on the executor thread
        traceback.print_exc(file=sys.stderr)
        raise _StartupError(EXIT_USER_ERROR, f"init_predict raised {describe_exception(exc)}") from None


async def _worker(config: RuntimeConfig, sockets: list[socket.socket], index: int, lifeline: int | None,
                  early_stop: threading.Event) -> tuple[int, concurrent.futures.ThreadPoolExecutor]:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if lifeline is not None:
        def on_lifeline() -> None:
            loop.remove_reader(lifeline)
            stop.set()

        loop.add_reader(lifeline, on_lifeline)
    if early_stop.is_set():
        stop.set()

    state = _State()
    reporter = MetricReporter(config.run_id, config.url, config.token, token_file=config.token_file)
    server = tornado.httpserver.HTTPServer(make_app(state))
    server.add_sockets(sockets)
    code = EXIT_OK
    try:
        # Import and Model() on the main thread (some libraries insist), before answering /invocations.
        state.model = _build(config, reporter)
        startup = loop.run_in_executor(state.executor, _init_predict, state.model)
        waiter = asyncio.ensure_future(stop.wait())
        await asyncio.wait([startup, waiter], return_when=asyncio.FIRST_COMPLETED)
        if startup.done():
            startup.result()  # raises _StartupError
            state.ready = True
            _say(f"MLP_READY worker={index} pid={os.getpid()}")
        await waiter
    except _StartupError as exc:
        _say(f"MLP_ERROR worker={index} pid={os.getpid()} {exc.reason}", sys.stderr)
        code = exc.code
    await _drain(server, state)
    reporter.hurry(2.0)
    await loop.run_in_executor(None, reporter.close, 3.0)
    return code, state.executor


async def _drain(server: tornado.httpserver.HTTPServer, state: _State) -> None:
    state.stopping = True
    server.stop()  # no new connections
    loop = asyncio.get_running_loop()
    grace = _grace()
    deadline = loop.time() + grace
    if state.inflight:
        log.info("stopping: waiting for %d in-flight request(s)", state.inflight)
    while state.inflight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    if state.inflight:
        log.warning("stopping: %d request(s) still running after %.0fs; exiting anyway", state.inflight, grace)
    try:
        await asyncio.wait_for(server.close_all_connections(), 2.0)
    except (asyncio.TimeoutError, Exception):
        pass


def _run_worker(config: RuntimeConfig, sockets: list[socket.socket], index: int,
                lifeline: int | None, early_stop: threading.Event) -> tuple[int, bool]:
    """Serve until stopped; returns (exit code, whether user code is still running on the executor)."""
    code, executor = asyncio.run(_worker(config, sockets, index, lifeline, early_stop))
    _say(f"MLP_STOPPED worker={index} pid={os.getpid()} exit_code={code}")
    closer = threading.Thread(target=executor.shutdown, kwargs={"wait": True, "cancel_futures": True}, daemon=True)
    closer.start()
    closer.join(1.0)
    return code, closer.is_alive()


def _exit_now(code: int) -> None:
    """A predict / init_predict outlived the grace period: exit without waiting for its thread
    (the interpreter would join it at exit)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


# -- the process ---------------------------------------------------------------
def _configure_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s [pid %(process)d] %(name)s: %(message)s"))
    for name in ("mlplatform.runtime", "tornado"):
        logger = logging.getLogger(name)
        logger.handlers[:] = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False
    logging.getLogger("tornado.access").setLevel(logging.WARNING)


def serve(flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run the web service until SIGTERM/SIGINT; returns the process exit code."""
    _configure_logging()
    try:
        config = RuntimeConfig.load("serve", flags, environ)
    except PlatformError as exc:
        _say(f"MLP_ERROR {exc.message}", sys.stderr)
        return EXIT_SETUP_ERROR
    try:
        sockets = tornado.netutil.bind_sockets(config.port, config.host)
    except OSError as exc:
        hint = " (the port is in use)" if exc.errno == errno.EADDRINUSE else ""
        _say(f"MLP_ERROR could not listen on {config.host}:{config.port}{hint}: {exc}", sys.stderr)
        return EXIT_SETUP_ERROR
    port = sockets[0].getsockname()[1]
    _say(f"MLP_SERVING port={port} host={config.host} workers={config.workers} pid={os.getpid()}")

    early_stop = threading.Event()
    if config.workers == 1:
        # Until the IOLoop takes the signals over (while the module loads), remember them.
        previous = {sig: signal.signal(sig, lambda signum, frame: early_stop.set())
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            code, stuck = _run_worker(config, sockets, 0, None, early_stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if stuck:
            _exit_now(code)
        return code
    return _serve_forked(config, sockets, early_stop)


def _serve_forked(config: RuntimeConfig, sockets: list[socket.socket], early_stop: threading.Event) -> int:
    parent = os.getpid()
    lifeline_r, lifeline_w = os.pipe()  # workers see EOF when the parent closes (or loses) its end
    report_r, report_w = os.pipe()  # workers write "<exit code>\n" when their model cannot start
    os.set_blocking(report_r, False)
    closed = {"lifeline": False}

    def close_lifeline() -> None:
        if not closed["lifeline"]:
            closed["lifeline"] = True
            os.close(lifeline_w)

    def on_signal(signum: int, frame: Any) -> None:
        if os.getpid() != parent:  # a worker before its IOLoop took over the signal
            early_stop.set()
            return
        if not closed["lifeline"]:
            log.info("received %s: stopping %d worker(s)", signal.Signals(signum).name, config.workers)
        close_lifeline()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        index = tornado.process.fork_processes(config.workers)
    except SystemExit:  # the parent, once every worker exited normally
        index, failure = None, None
    except RuntimeError as exc:  # too many restarts
        log.error("%s; stopping", exc)
        close_lifeline()
        _reap_all()
        index = None
        failure = EXIT_USER_ERROR
    if index is not None:  # a worker
        os.close(report_r)
        if not closed["lifeline"]:
            os.close(lifeline_w)
        else:
            early_stop.set()
        code, stuck = _run_worker(config, sockets, index, lifeline_r, early_stop)
        if code != EXIT_OK:
            # Report and exit 0, so that tornado does not restart a model that cannot start;
            # the parent then stops the other workers and exits with this code.
            try:
                os.write(report_w, f"{code}\n".encode())
                os.kill(parent, signal.SIGTERM)
            except OSError:
                pass
        if stuck:
            _exit_now(EXIT_OK)
        return EXIT_OK

    # the parent
    for sig, handler in previous.items():
        signal.signal(sig, handler)
    close_lifeline()
    for sock in sockets:
        sock.close()
    try:
        reported = os.read(report_r, 4096).decode().split()
    except BlockingIOError:
        reported = []
    codes = [int(c) for c in reported if c.isdigit()]
    code = failure if failure is not None else (codes[0] if codes else EXIT_OK)
    _say(f"MLP_STOPPED workers={config.workers} pid={os.getpid()} exit_code={code}")
    return code


def _reap_all() -> None:
    deadline = time.monotonic() + _grace() + 5
    while time.monotonic() < deadline:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.1)
