"""Helpers every backend shares: the runtime's result file, run files, a free port, a /ping probe."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

from .base import RunState, RunStatus


def read_result(path: Path) -> RunStatus | None:
    """The final state the runtime wrote (MLP_RESULT_PATH), or None when there is none yet."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    state = RunState.SUCCEEDED if data.get("status") == "succeeded" else RunState.FAILED
    return RunStatus(state, data.get("reason"))


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def append_text(path: Path, text: str) -> None:
    """Add to a run's kept log; a log that cannot be written never fails the caller."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(text)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(url: str) -> bool:
    """True when a serving process answers GET /ping with 200."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
