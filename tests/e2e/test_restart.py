"""`kill -9` of the server while a run trains, then a restart: the run ends in its true state."""

from __future__ import annotations

import time

import pytest

from support import pids_with_env

from notebooks import cell, notebook

SLOW_MODEL = '''
import time

class Model:
    hyperparameters = {"seconds": 3.0, "fail": False}

    def train(self):
        self.log_metric("started", 1)
        time.sleep(self.hyperparameters["seconds"])
        if self.hyperparameters["fail"]:
            raise RuntimeError("diverged: loss is nan")
        (self.artifacts / "done.txt").write_text("ok")
        self.log_metric("accuracy", 0.75)

    def predict(self, features):
        return features
'''


@pytest.fixture(params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def any_server(request):
    return request.getfixturevalue("mlp_server" if request.param == "process" else "docker_server")


def test_kill_9_while_training_then_restart(any_server, tmp_path):
    mlp_server = any_server
    nb = tmp_path / "slow.ipynb"
    nb.write_text(notebook(cell(SLOW_MODEL)))
    mlp_server.mlp("models", "save", str(nb), "--name", "slow")
    ok = mlp_server.mlp_json("train", "slow", "--hp", "seconds=4")
    bad = mlp_server.mlp_json("train", "slow", "--hp", "seconds=4", "--hp", "fail=true")
    time.sleep(1.0)
    mlp_server.kill()  # SIGKILL: no cleanup, no goodbye
    time.sleep(5.0)  # both runs end while nobody watches
    mlp_server.start()
    ok_run = mlp_server.wait_run(ok["id"], timeout=30)
    bad_run = mlp_server.wait_run(bad["id"], timeout=30)
    assert ok_run["status"] == "succeeded", ok_run
    assert ok_run["metrics"]["accuracy"] == 0.75  # printed while the API was down, recovered from the log
    assert bad_run["status"] == "failed"
    assert "diverged: loss is nan" in bad_run["reason"]
    assert (mlp_server.data_dir / "runs" / ok["id"] / "artifacts" / "done.txt").read_text() == "ok"


def test_restart_while_still_running_keeps_watching(mlp_server, tmp_path):
    nb = tmp_path / "slow.ipynb"
    nb.write_text(notebook(cell(SLOW_MODEL)))
    mlp_server.mlp("models", "save", str(nb), "--name", "slow")
    # Long enough to outlast a restart on a loaded machine (5 s did not, once, in CI).
    run = mlp_server.mlp_json("train", "slow", "--hp", "seconds=20")
    time.sleep(1.0)
    mlp_server.kill()
    mlp_server.start()
    with mlp_server.api() as api:
        assert api.get(f"/runs/{run['id']}").json()["status"] in ("pending", "running")
    assert mlp_server.wait_run(run["id"], timeout=60)["status"] == "succeeded"


def test_process_killed_while_server_down_is_failed(mlp_server, tmp_path):
    import os
    import signal

    nb = tmp_path / "slow.ipynb"
    nb.write_text(notebook(cell(SLOW_MODEL)))
    mlp_server.mlp("models", "save", str(nb), "--name", "slow")
    run = mlp_server.mlp_json("train", "slow", "--hp", "seconds=30")
    time.sleep(1.0)
    with mlp_server.api() as api:
        assert mlp_server.wait_for_status(api, run["id"], "running")
    mlp_server.kill()
    pid = _runtime_pid(run["id"])
    os.killpg(pid, signal.SIGKILL)
    mlp_server.start()
    final = mlp_server.wait_run(run["id"], timeout=30)
    assert final["status"] == "failed"
    assert "without reporting a result" in final["reason"]


def test_cancel(mlp_server, tmp_path):
    nb = tmp_path / "slow.ipynb"
    nb.write_text(notebook(cell(SLOW_MODEL)))
    mlp_server.mlp("models", "save", str(nb), "--name", "slow")
    run = mlp_server.mlp_json("train", "slow", "--hp", "seconds=30")
    cancelled = mlp_server.mlp_json("runs", "cancel", run["id"])
    assert cancelled["status"] == "cancelled"
    time.sleep(1.5)
    assert mlp_server.mlp_json("runs", "show", run["id"])["status"] == "cancelled"
    assert _runtime_pid(run["id"], missing_ok=True) is None
    proc = mlp_server.mlp("runs", "cancel", run["id"], check=False)
    assert proc.returncode == 1 and "already ended" in proc.stderr
    again = mlp_server.mlp_json("runs", "replicate", run["id"])
    assert again["replicated_from"] == run["id"] and again["hyperparameters"]["seconds"] == 30.0
    mlp_server.mlp("runs", "cancel", again["id"])


def _runtime_pid(run_id: str, missing_ok: bool = False):
    pids = pids_with_env(f"MLP_RUN_ID={run_id}\0".encode())
    if pids:
        return pids[0]
    if missing_ok:
        return None
    raise AssertionError(f"no runtime process for run {run_id}")
