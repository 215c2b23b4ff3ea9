"""``log_metric``: print one ``MLP_METRIC {json}`` line, and deliver to the platform API in the background.

Every metric is printed to stdout first (the platform reads those lines back from the
kept log when the API was unreachable), then queued for a daemon thread that POSTs
batches to ``{MLP_URL}/api/v1/runs/{MLP_RUN_ID}/metrics`` with the run token. Connection
errors, 408/429 and 5xx are retried with backoff for ``retry_seconds``; anything that still
fails is a warning on stderr, never an error of the run. The token is never printed.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import math
import numbers
import os
import queue
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

PREFIX = "MLP_METRIC "
MAX_NAME = 128
BATCH_MAX = 500
_STOP = object()


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat()


def _check(name: Any, value: Any, step: Any) -> tuple[str, float, int | None]:
    if not isinstance(name, str):
        raise TypeError(f"log_metric: name must be a string, got {type(name).__name__}")
    if not name.strip():
        raise ValueError("log_metric: name must be a non-empty string")
    if len(name) > MAX_NAME:
        raise ValueError(f"log_metric: name must be at most {MAX_NAME} characters, got {len(name)}")
    if isinstance(value, (bool, str, bytes)) or type(value).__name__ == "bool_":
        raise TypeError(f"log_metric({name!r}): value must be a real number, got {type(value).__name__} {value!r}")
    if isinstance(value, numbers.Real):
        number = float(value)
    else:  # numpy 0-d arrays, one-element tensors, Decimal…
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise TypeError(
                f"log_metric({name!r}): value must be a real number, got {type(value).__name__}"
            ) from None
    if step is not None:
        if isinstance(step, bool) or not isinstance(step, numbers.Integral):
            raise TypeError(f"log_metric({name!r}): step must be an integer or None, got {type(step).__name__} {step!r}")
        step = int(step)
    return name, number, step


class MetricReporter:
    """One per process. ``log_metric`` is what the user's Model gets."""

    def __init__(self, run_id: str | None, url: str | None, token: str | None,
                 retry_seconds: float | None = None, token_file: Path | None = None) -> None:
        self.run_id = run_id
        self.endpoint = None
        self._token_file = token_file
        has_token = bool(token or token_file)
        if url and has_token and run_id:
            self.endpoint = f"{url.rstrip('/')}/api/v1/runs/{urllib.request.quote(run_id, safe='')}/metrics"
        self._token = token
        if retry_seconds is None:
            try:
                retry_seconds = float(os.environ.get("MLP_METRICS_RETRY_SECONDS", "8"))
            except ValueError:
                retry_seconds = 8.0
        self.retry_seconds = max(0.0, retry_seconds)
        self._queue: queue.Queue = queue.Queue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._deadline: float | None = None  # set by close(): stop retrying after it
        self._closed = False
        self._warned_nonfinite: set[str] = set()
        self.delivered = 0
        self.undelivered = 0
        self._opener = urllib.request.build_opener()
        if url and has_token and not run_id:
            self._warn("MLP_URL and MLP_RUN_TOKEN are set but MLP_RUN_ID is not: metrics are only printed")

    # -- the user's side -----------------------------------------------------
    def log_metric(self, name: str, value: float, step: int | None = None) -> None:
        """Record ``value`` of metric ``name`` (at ``step``, an optional integer)."""
        name, number, step = _check(name, value, step)
        item = {"name": name, "value": number, "step": step, "time": now_iso()}
        line = PREFIX + json.dumps(item)
        with self._lock:
            out = sys.stdout
            try:
                out.write(line + "\n")
                out.flush()
            except (OSError, ValueError):
                pass
        if self.endpoint is None:
            return
        if not math.isfinite(number):
            if name not in self._warned_nonfinite:
                self._warned_nonfinite.add(name)
                self._warn(f"metric {name!r} has the non-finite value {number}; printed but not sent "
                           "(the platform records finite values only)")
            return
        if os.getpid() != self._pid:  # a forked child (multiprocessing): no thread here, send inline
            self._send([item])
            return
        with self._lock:
            if self._closed:
                self._warn(f"metric {name!r} logged after the run ended; printed but not sent")
                return
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="mlp-metrics", daemon=True)
                self._thread.start()
            self._queue.put(item)

    # -- the runtime's side --------------------------------------------------
    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            thread = self._thread
        if thread is None or os.getpid() != self._pid:
            return
        self._deadline = time.monotonic() + timeout
        self._queue.put(_STOP)
        thread.join(timeout)
        if thread.is_alive():
            pending = self._queue.qsize()
            self._warn(f"gave up waiting for metric delivery after {timeout:.0f}s; about {pending} "
                       "metric(s) may not have reached the platform (they are in this log as MLP_METRIC lines)")

    def hurry(self, seconds: float = 1.0) -> None:
        """Shorten retries (the process is being stopped)."""
        limit = time.monotonic() + seconds
        if self._deadline is None or self._deadline > limit:
            self._deadline = limit

    def _run(self) -> None:
        stop = False
        while not stop:
            item = self._queue.get()
            if item is _STOP:
                break
            batch = [item]
            while len(batch) < BATCH_MAX:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is _STOP:
                    stop = True
                    break
                batch.append(nxt)
            self._send(batch)

    def _current_token(self) -> str:
        """The run token; from ``token_file`` (a projected service-account token on Kubernetes,
        which the kubelet rotates) it is read afresh for every request."""
        if self._token_file is not None:
            try:
                return self._token_file.read_text().strip()
            except OSError:
                return ""
        return self._token or ""

    def _send(self, batch: list[dict[str, Any]]) -> bool:
        assert self.endpoint is not None
        body = json.dumps({"metrics": batch}).encode()
        request = urllib.request.Request(
            self.endpoint,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "Authorization": f"Bearer {self._current_token()}"},
        )
        give_up_at = time.monotonic() + self.retry_seconds
        delay = 0.2
        while True:
            try:
                with self._opener.open(request, timeout=5) as response:
                    response.read()
                self.delivered += len(batch)
                return True
            except urllib.error.HTTPError as exc:
                detail = _error_detail(exc)
                if exc.code < 500 and exc.code not in (408, 429):
                    self.undelivered += len(batch)
                    self._warn(f"the platform refused {len(batch)} metric(s): HTTP {exc.code}{detail}")
                    return False
                problem = f"HTTP {exc.code}{detail}"
            except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
                reason = getattr(exc, "reason", exc)
                problem = f"{type(reason).__name__}: {reason}" if isinstance(reason, BaseException) else str(reason)
            limit = give_up_at if self._deadline is None else min(give_up_at, self._deadline)
            if time.monotonic() + delay > limit:
                self.undelivered += len(batch)
                self._warn(f"could not deliver {len(batch)} metric(s) to the platform ({problem}); "
                           "they are in this log as MLP_METRIC lines")
                return False
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @staticmethod
    def _warn(message: str) -> None:
        try:
            sys.stderr.write(f"MLP_WARNING {message}\n")
            sys.stderr.flush()
        except (OSError, ValueError):
            pass


def _error_detail(exc: urllib.error.HTTPError) -> str:
    try:
        text = exc.read(400).decode(errors="replace")
        message = json.loads(text).get("message", text)
    except Exception:
        return ""
    return f" ({' '.join(str(message).split())[:300]})" if message else ""
