"""train and batch-predict: run one method of the user's Model and write the result file.

The result file (MLP_RESULT_PATH) is how the platform learns the true final state, even
after its own crash, so it is written on every exit path this process controls:
``{"status": "succeeded"|"failed", "reason": str|None, "finished_at": iso8601}``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import tempfile
import threading
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ..errors import PlatformError
from .context import (
    METHODS,
    RuntimeConfig,
    build_model,
    describe_exception,
    load_module,
    method,
    one_line,
    option,
)
from . import distributed
from .metrics import MetricReporter, now_iso

EXIT_OK = 0
EXIT_USER_ERROR = 1
EXIT_SETUP_ERROR = 2


class _Terminated(BaseException):
    """Raised in the main thread by the SIGTERM handler (not an Exception: user code's
    ``except Exception`` must not swallow it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def write_result(path: Path, status: str, reason: str | None) -> None:
    """Atomically replace ``path`` with the result JSON (temporary file + os.replace)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps({"status": status, "reason": reason, "finished_at": now_iso()})
    fd, tmp = tempfile.mkstemp(prefix=".result-", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(data + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _say(line: str, stream: Any = None) -> None:
    stream = stream or sys.stdout
    try:
        stream.write(line + "\n")
        stream.flush()
    except (OSError, ValueError):
        pass


def run_job(action: str, flags: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None) -> int:
    """Run ``train`` or ``batch-predict``; returns the process exit code."""
    env = os.environ if environ is None else environ
    method_name = METHODS[action]
    raw_result = option("result_path", flags, env)
    result_path = Path(raw_result).expanduser() if raw_result else None
    run_id = option("run_id", flags, env)
    worker = distributed.is_worker(env)
    if worker and result_path is not None:  # the node's agent writes the run's result
        result_path = distributed.worker_result_path(result_path, distributed.rank(env))
    rank_note = f" rank={distributed.rank(env)}" if worker else ""
    _say(f"MLP_START action={action} run_id={run_id or '-'} pid={os.getpid()}{rank_note}")

    guard = _SignalGuard(result_path)
    reporter: MetricReporter | None = None

    def on_signal(signum: int, frame: Any) -> None:
        if not guard.in_user_code:  # the outcome is known; just finish quickly
            if reporter is not None:
                reporter.hurry()
            return
        if guard.terminating:
            return
        guard.terminating = True
        raise _Terminated(signum)

    previous = signal.signal(signal.SIGTERM, on_signal)
    guard.start()
    status, reason, code = "failed", None, EXIT_SETUP_ERROR
    try:
        try:
            config = RuntimeConfig.load(action, flags, env)
            if action == "train":
                config.artifacts.mkdir(parents=True, exist_ok=True)
            if config.outputs is not None:
                config.outputs.parent.mkdir(parents=True, exist_ok=True)
            plan = distributed.worker_plan(env) if action == "train" else None
            if plan is not None:  # this node's agent: the workers run the model
                distributed.require_torch(plan)
                distributed.run_workers(plan, distributed.with_flags(env, flags), result_path)
            else:
                reporter = MetricReporter(config.run_id, config.url, config.token, token_file=config.token_file)
                log_metric = reporter.log_metric if distributed.rank(env) == 0 else _drop_metric
                module = load_module(config.module_path)
                model = build_model(module, config, log_metric)
                run = method(model, method_name)
                run()
            status, reason, code = "succeeded", None, EXIT_OK
        finally:
            guard.leave_user_code()
    except _Terminated as exc:
        name = signal.Signals(exc.signum).name
        reason, code = f"terminated by signal {name}", 128 + exc.signum
        _say(f"MLP_ERROR {reason}", sys.stderr)
    except KeyboardInterrupt:
        reason, code = "interrupted by signal SIGINT", 128 + signal.SIGINT
        _say(f"MLP_ERROR {reason}", sys.stderr)
    except distributed.WorkersFailed as exc:
        reason, code = one_line(exc.reason), EXIT_USER_ERROR
        _say(f"MLP_ERROR {reason}", sys.stderr)
    except PlatformError as exc:  # configuration or contract: the run could not start
        reason, code = one_line(exc.message), EXIT_SETUP_ERROR
        _say(f"MLP_ERROR {reason}", sys.stderr)
    except SystemExit as exc:  # sys.exit() in the user's code
        if exc.code in (None, 0):
            status, reason, code = "succeeded", None, EXIT_OK
        else:
            traceback.print_exc(file=sys.stderr)
            reason, code = one_line(f"{method_name} called sys.exit({exc.code!r})"), EXIT_USER_ERROR
    except Exception as exc:  # the user's code raised
        traceback.print_exc(file=sys.stderr)
        reason, code = describe_exception(exc), EXIT_USER_ERROR
    finally:
        sys.stdout.flush()
        terminated = code > 128
        try:
            if terminated and result_path is not None:  # the kill may follow soon: result first
                _write(result_path, status, reason)
            if reporter is not None:
                reporter.close(timeout=2.0 if terminated else 10.0)
            if not terminated and result_path is not None:
                _write(result_path, status, reason)
        finally:
            guard.stop()
            signal.signal(signal.SIGTERM, previous)
    end = f"MLP_END status={status} exit_code={code}"
    _say(end + (f" reason={json.dumps(reason)}" if reason else ""))
    return code


def _drop_metric(name: str, value: float, step: int | None = None) -> None:
    """``log_metric`` of a distributed run's ranks other than 0: only rank 0 reports."""


class _SignalGuard:
    """Writes the "terminated" result as soon as SIGTERM arrives, from a thread.

    Python runs signal handlers on the main thread between bytecodes, so user code stuck in a
    long C call (a solver, a training step) would not notice SIGTERM before the SIGKILL that
    follows. ``signal.set_wakeup_fd`` makes the C-level handler write the signal number to a
    pipe at once; this thread reads it and records the result while the main thread is busy.
    The main thread's handler then raises _Terminated as soon as it runs.
    """

    def __init__(self, result_path: Path | None) -> None:
        self.result_path = result_path
        self.in_user_code = True
        self.terminating = False
        self._lock = threading.Lock()
        self._fds: tuple[int, int] | None = None
        self._previous_fd = -1

    def start(self) -> None:
        if self.result_path is None:
            return
        try:
            r, w = os.pipe()
            os.set_blocking(w, False)
            self._previous_fd = signal.set_wakeup_fd(w, warn_on_full_buffer=False)
        except (OSError, ValueError):
            return
        self._fds = (r, w)
        threading.Thread(target=self._watch, args=(r,), name="mlp-signals", daemon=True).start()

    def _watch(self, fd: int) -> None:
        while True:
            try:
                data = os.read(fd, 64)
            except OSError:
                return
            if not data:
                os.close(fd)
                return
            if signal.SIGTERM in data:
                with self._lock:
                    if self.in_user_code and self.result_path is not None:
                        _write(self.result_path, "failed", "terminated by signal SIGTERM")

    def leave_user_code(self) -> None:
        with self._lock:
            self.in_user_code = False

    def stop(self) -> None:
        if self._fds is None:
            return
        try:
            signal.set_wakeup_fd(self._previous_fd)
        except (OSError, ValueError):
            pass
        os.close(self._fds[1])  # the watcher reads end of file and ends
        self._fds = None


def _write(path: Path, status: str, reason: str | None) -> None:
    try:
        write_result(path, status, reason)
    except OSError as exc:
        _say(f"MLP_WARNING could not write the result file {str(path)!r}: {describe_exception(exc)}", sys.stderr)
