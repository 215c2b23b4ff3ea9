"""Helpers shared by the suites (imported by name; conftest modules are not importable reliably)."""

from __future__ import annotations

import os
import socket

import pytest


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def required_env(name: str) -> str:
    """Services the suite needs are started by `make test`; a missing one is a failure, not a skip."""
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with `make test`, which starts the services it needs")
    return value
