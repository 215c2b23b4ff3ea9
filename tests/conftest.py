"""Fixtures shared by the suites: a real `mlp server` subprocess and the `mlp` CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support import (fresh_postgres_database, free_port, required_env,  # noqa: F401  (re-exported for fixtures)
                     stop_stray_processes)



class MlpServer:
    """`mlp server` as a real subprocess (so it can be killed -9 and restarted)."""

    def __init__(self, data_dir: Path, backend: str = "process", config: Path | None = None,
                 db_url: str | None = None, extra_env: dict[str, str] | None = None,
                 extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.backend = backend
        self.config = config
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.token = "admin-" + os.urandom(12).hex()
        self.extra_env = extra_env or {}
        self.extra_args = list(extra_args or [])
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    def start(self) -> "MlpServer":
        args = [sys.executable, "-m", "mlplatform_server.cli", "server", "--backend", self.backend,
                "--data-dir", str(self.data_dir), "--port", str(self.port)]
        if self.config:
            args += ["--config", str(self.config)]
        if self.db_url:
            args += ["--db-url", self.db_url]
        args += self.extra_args
        env = {**os.environ, "MLP_TOKEN": self.token, **self.extra_env}
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mlp server exited:\n{self.log_path.read_text()}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"mlp server did not answer:\n{self.log_path.read_text()}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=30)

    def api(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.url + "/api/v1",
                            headers={"Authorization": f"Bearer {token or self.token}"}, timeout=60)

    def mlp(self, *args: str, token: str | None = None, check: bool = True,
            cwd: Path | None = None) -> subprocess.CompletedProcess:
        env = {**os.environ, "MLP_URL": self.url, "MLP_TOKEN": token or self.token}
        proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", *args], capture_output=True,
                              text=True, env=env, cwd=cwd or ROOT, timeout=180)
        if check and proc.returncode != 0:
            raise AssertionError(f"mlp {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def mlp_json(self, *args: str, token: str | None = None) -> Any:
        return json.loads(self.mlp(*args, "--json", token=token).stdout)

    def wait_run(self, run_id: str, timeout: float = 120) -> dict[str, Any]:
        deadline = time.time() + timeout
        with self.api() as api:
            while time.time() < deadline:
                run = api.get(f"/runs/{run_id}").json()
                if run["status"] in ("succeeded", "failed", "cancelled"):
                    return run
                time.sleep(0.2)
        raise AssertionError(f"run {run_id} did not end in {timeout}s: {run}")

    def wait_for_status(self, api: httpx.Client, run_id: str, status: str, timeout: float = 30) -> bool:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if api.get(f"/runs/{run_id}").json()["status"] == status:
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        self.kill(signal.SIGTERM)


@pytest.fixture
def mlp_server_factory(tmp_path):
    servers: list[MlpServer] = []

    def make(**kwargs: Any) -> MlpServer:
        server = MlpServer(tmp_path / "data", **kwargs)
        servers.append(server)
        return server.start()

    yield make
    for server in servers:
        server.stop()
    stop_stray_processes(tmp_path)


@pytest.fixture
def mlp_server(mlp_server_factory) -> MlpServer:
    return mlp_server_factory()


@pytest.fixture
def docker_server(mlp_server_factory, tmp_path) -> MlpServer:
    """`mlp server --backend docker` against the Podman service and the locally built image."""
    import yaml

    docker_host = required_env("MLP_TEST_DOCKER_HOST")
    image = required_env("MLP_TEST_IMAGE")
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump({
        "environments": [{"name": "python", "image": image, "default": True}],
        "hardware": [{"name": "cpu-small", "cpu": 1, "memory": "1Gi", "default": True}],
    }))
    return mlp_server_factory(backend="docker", config=config, extra_env={"DOCKER_HOST": docker_host})


@pytest.fixture
def platform_yaml(tmp_path: Path) -> Path:
    """The shipped default sizes (cpu-small, gpu-1, ...) plus gpu-8, which no node can hold (its pod
    stays pending: a live pod)."""
    import yaml

    config = yaml.safe_load((ROOT / "mlplatform_server" / "default_platform.yaml").read_text())
    gpu1 = next(h for h in config["hardware"] if h["name"] == "gpu-1")
    config["hardware"].append({**gpu1, "name": "gpu-8", "display_name": "Eight GPUs", "gpus": 8})
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path) -> Iterator[str]:
    """An empty database: a SQLite file, or a fresh database on the real PostgreSQL `make test` started."""
    from mlplatform_server.store.db import sqlite_url

    if request.param == "sqlite":
        yield sqlite_url(tmp_path)
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture
def store(database_url: str) -> Iterator[Any]:
    """The platform's Store on `database_url` (so on SQLite and on PostgreSQL)."""
    from mlplatform_server.store.db import Store

    s = Store(database_url)
    yield s
    s.close()
