"""Helpers shared by the suites (imported by name; conftest modules are not importable reliably)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
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


def wait_until(what: str, check: Callable[[], Any], timeout: float = 60.0) -> Any:
    """Poll `check` until it returns something truthy (returned); fail naming `what` and its last value."""
    deadline = time.time() + timeout
    while True:
        value = check()
        if value:
            return value
        assert time.time() < deadline, f"timed out waiting for {what}: last {value!r}"
        time.sleep(0.3)


def stop_process_group(proc: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM the process group `proc` leads; SIGKILL it when it has not ended within `timeout`."""
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@contextmanager
def private_podman(prefix: str) -> Iterator[str]:
    """A Podman API service of our own, its `unix://` URL: it reads the registries.conf drop-in
    (plain-HTTP test registries) that scripts/registry.sh writes, whenever the shared service was started."""
    import docker

    sock_dir = Path(f"/tmp/{prefix}-{uuid.uuid4().hex[:8]}")
    sock_dir.mkdir()
    url = f"unix://{sock_dir / 'podman.sock'}"
    with open(sock_dir / "service.log", "ab") as log:
        proc = subprocess.Popen(["podman", "system", "service", "--time=0", url], stdout=log,
                                stderr=subprocess.STDOUT, cwd=sock_dir, start_new_session=True)
    deadline = time.time() + 30
    while True:
        try:
            client = docker.DockerClient(base_url=url)
            try:
                client.ping()
            finally:
                client.close()
            break
        except Exception:
            if time.time() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail(f"private podman service did not start: {(sock_dir / 'service.log').read_text()}")
            time.sleep(0.2)
    try:
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(sock_dir, ignore_errors=True)


def save_with_requirements(server: Any, tmp_path: Path) -> Path:
    """Save the spine's notebook as model `iris` from a project folder with a requirements.txt; the folder."""
    from notebooks import realistic_notebook

    folder = tmp_path / "project"
    folder.mkdir()
    nb = folder / "iris.ipynb"
    nb.write_text(realistic_notebook())
    (folder / "requirements.txt").write_text("tabulate==0.9.0\n")
    server.mlp_json("models", "save", str(nb), "--name", "iris")
    return folder


def stop_stray_processes(tmp_path: Path) -> None:
    """Kill runtime processes (runs, deployments) a test under `tmp_path` left running; they live in
    their own sessions."""
    for pid in pids_with_env(str(tmp_path).encode(), b"MLP_MODULE_PATH"):
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


@contextmanager
def jupyter_server(root: Path, env: dict[str, str], log_path: Path, token_prefix: str = "tok") -> Iterator[tuple[str, str]]:
    """A real `jupyter server` on a free port, rooted at ``root`` with ``env``; yields (url, token)
    once it answers, and stops its process group afterwards."""
    port, token = free_port(), f"{token_prefix}-{os.urandom(8).hex()}"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyter")), "server", "--no-browser", "--ip=127.0.0.1",
             f"--port={port}", "--port-retries=0", f"--IdentityProvider.token={token}",
             f"--ServerApp.root_dir={root}", "--allow-root"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/"
    try:
        def answers() -> bool:
            assert proc.poll() is None, log_path.read_text()
            try:
                return httpx.get(url + "api/status", params={"token": token}, timeout=5).status_code == 200
            except httpx.HTTPError:
                return False

        wait_until(f"jupyter server on {url}", answers, timeout=120)
        yield url, token
    finally:
        stop_process_group(proc, timeout=30)


def train_through_lab(http: Any, path: str = "model.py", name: str = "tb", timeout: float = 120) -> dict[str, Any]:
    """Save ``path`` (in the Jupyter server's root) as model ``name`` and train it through the Lab
    extension's routes (``http``: a client on the server's base URL); the finished run."""
    saved = http.post("mlplatform/models", json={"path": path, "name": name})
    assert saved.status_code == 201, saved.text
    run = http.post("mlplatform/api/runs", json={"model": name, "kind": "train"})
    assert run.status_code == 201, run.text
    run_id = run.json()["id"]
    return wait_until(f"run {run_id} to finish",
                      lambda: (body := http.get(f"mlplatform/api/runs/{run_id}").json())["status"]
                      in ("succeeded", "failed", "cancelled") and body, timeout=timeout)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A fresh database on the real PostgreSQL `make test` started; dropped afterwards."""
    from sqlalchemy import create_engine, text

    base = required_env("MLP_TEST_PG_URL")
    name = "t_" + uuid.uuid4().hex[:10]
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
