"""TensorBoard for a run whose artifacts the notebook server cannot see (as on Kubernetes, where
notebook pods mount nothing of the platform's volume): a real `mlp server` with its own data dir,
and a real `jupyter server` relaying to it with the user's token and another data dir. Opening
the run's TensorBoard copies its event files through the artifacts API into the user's private
cache (0700) and TensorBoard serves the run's scalars through the proxy; a still-running run is
synced again on the next open (its event file grows in place); someone else's run is a 404; the
platform gone is a 502 with a message."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import jupyter_server, wait_until

MODEL = '''
import os
import time


class Model:
    hyperparameters = {"steps": 2, "gate": ""}

    def train(self):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(self.artifacts / "logs"))

        def write(step):
            value = summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                             summary=summary_pb2.Summary(value=[value])))

        steps, gate = self.hyperparameters["steps"], self.hyperparameters["gate"]
        for step in range(steps):
            write(step)
        writer.flush()
        if gate:  # go on once the test says so: the run is seen while it is running
            deadline = time.time() + 300
            while not os.path.exists(gate) and time.time() < deadline:
                time.sleep(0.2)
            for step in range(steps, 2 * steps):
                write(step)
        writer.close()
'''


def api(server: Any, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


@pytest.fixture
def users(mlp_server) -> dict[str, str]:
    with api(mlp_server, mlp_server.token) as admin:
        tokens = {}
        for name in ("alice", "bob"):
            assert admin.post("/users", json={"name": name}).status_code == 201
            tokens[name] = admin.post(f"/users/{name}/tokens", json={}).json()["token"]
    return tokens


@pytest.fixture
def remote_lab(mlp_server, users, tmp_path: Path) -> Iterator[dict]:
    """Alice's Jupyter server: the platform is `mlp_server`, reached only through its URL."""
    root = tmp_path / "root"
    root.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLP_", "JUPYTERHUB_"))}
    env.update({"MLP_URL": mlp_server.url, "MLP_TOKEN": users["alice"], "MLP_DATA_DIR": str(tmp_path / "lab-data"),
                "XDG_CACHE_HOME": str(tmp_path / "cache")})
    log_path = tmp_path / "lab.log"
    with jupyter_server(root, env, log_path, "tbs") as (url, token):
        yield {"url": url, "token": token, "log": log_path, "cache": tmp_path / "cache"}


def _train(client: httpx.Client, model: str, hyperparameters: dict[str, Any]) -> str:
    saved = client.post("/models", json={"name": model, "source": MODEL, "filename": "model.py"})
    assert saved.status_code == 201, saved.text
    started = client.post("/runs", json={"model": model, "hyperparameters": hyperparameters})
    assert started.status_code == 201, started.text
    return started.json()["id"]


def _steps(lab: httpx.Client, run_id: str) -> list[int]:
    answer = lab.get(f"mlplatform/tensorboard/{run_id}/data/plugin/scalars/scalars", params={"run": ".", "tag": "loss"})
    return [point[1] for point in answer.json()] if answer.status_code == 200 else []


def test_tensorboard_synced_through_the_api(mlp_server, users, remote_lab, tmp_path):
    server, gate = mlp_server, tmp_path / "gate"
    alice, bob = api(server, users["alice"]), api(server, users["bob"])
    run_id = _train(alice, "tb-alice", {"gate": str(gate)})
    folder = server.data_dir / "runs" / run_id / "artifacts" / "logs"
    wait_until("the run's first events", lambda: any(folder.glob("events.out.tfevents.*")) and
               alice.get(f"/runs/{run_id}").json()["status"] == "running", timeout=120)
    lab = httpx.Client(base_url=remote_lab["url"], headers={"Authorization": f"token {remote_lab['token']}"},
                       timeout=180)

    # open while running: the event file is copied into the user's private cache
    opened = lab.post("mlplatform/tensorboards", json={"run": run_id})
    assert opened.status_code == 200, opened.text
    cache = remote_lab["cache"] / "mlplatform" / "tensorboard"
    assert opened.json()["logdir"] == str(cache / run_id / "logs")
    assert not (tmp_path / "lab-data" / "runs").exists()  # nothing of the platform's data dir here
    for path in (cache.parent, cache, cache / run_id, cache / run_id / "logs"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    [event] = folder.glob("events.out.tfevents.*")
    copy = cache / run_id / "logs" / event.name
    assert copy.read_bytes() == event.read_bytes()

    # TensorBoard on the copy, through the proxy: the page, the run, its scalar and both steps
    page = lab.get(opened.json()["url"].lstrip("/"))
    assert page.status_code == 200 and "TensorBoard" in page.text, page.text[:300]
    assert "." in lab.get(f"mlplatform/tensorboard/{run_id}/data/runs").json()
    tags = lab.get(f"mlplatform/tensorboard/{run_id}/data/plugin/scalars/tags")
    assert tags.status_code == 200 and "loss" in json.dumps(tags.json()), tags.text
    assert wait_until("steps 0 and 1", lambda: _steps(lab, run_id) == [0, 1], timeout=60)

    # the run goes on and ends: the next open syncs the grown file (in place), TensorBoard shows it
    inode = copy.stat().st_ino
    gate.touch()
    assert server.wait_run(run_id)["status"] == "succeeded"
    assert lab.post("mlplatform/tensorboards", json={"run": run_id}).status_code == 200
    assert copy.read_bytes() == event.read_bytes() and copy.stat().st_ino == inode
    assert wait_until("steps 0 to 3", lambda: _steps(lab, run_id) == [0, 1, 2, 3], timeout=90)

    # someone else's run: 404, and nothing of it cached
    other = _train(bob, "tb-bob", {"steps": 1})
    assert server.wait_run(other)["status"] == "succeeded"
    refused = lab.post("mlplatform/tensorboards", json={"run": other})
    assert refused.status_code == 404 and other in refused.json()["message"], refused.text
    assert lab.get(f"mlplatform/tensorboard/{other}/").status_code == 404
    assert not (cache / other).exists()

    # the platform gone: 502 naming it
    server.stop()
    gone = lab.post("mlplatform/tensorboards", json={"run": run_id})
    assert gone.status_code == 502 and "Cannot reach the platform API" in gone.json()["message"], gone.text
    assert users["alice"] not in remote_lab["log"].read_text()  # the user's token is never logged
    for client in (alice, bob, lab):
        client.close()
