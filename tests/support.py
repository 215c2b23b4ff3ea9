"""Helpers shared by the suites (imported by name; conftest modules are not importable reliably)."""

from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

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


ROOT = Path(__file__).resolve().parents[1]


def registry_env() -> dict[str, str]:
    """Start the test registries (idempotent), push the environment image, return their MLP_TEST_* settings."""
    proc = subprocess.run([str(ROOT / "scripts" / "registry.sh"), "env"], capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    if proc.returncode != 0:
        pytest.fail(f"scripts/registry.sh failed:\n{proc.stderr}")
    env = {}
    for line in proc.stdout.splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip("'")
    if "MLP_TEST_BASE_REF" not in env:
        pytest.fail(f"scripts/registry.sh pushed no base image (is MLP_TEST_IMAGE built?):\n{proc.stderr}")
    return env


def pids_with_env(*entries: bytes) -> list[int]:
    """Processes whose environment contains every given byte string (runtime processes of a test)."""
    found = []
    for proc_dir in Path("/proc").iterdir():
        if not proc_dir.name.isdigit():
            continue
        try:
            environ = (proc_dir / "environ").read_bytes()
        except OSError:
            continue
        if all(entry in environ for entry in entries):
            found.append(int(proc_dir.name))
    return found
