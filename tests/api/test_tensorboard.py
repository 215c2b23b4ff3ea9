"""TensorBoard beside notebooks (mlplatform_server/tensorboard.py, `mlp tensorboard`), through a real
`jupyter server` subprocess with the mlplatform extension (in-process platform, process backend) and
jupyter-server-proxy: a run trains for real and writes TensorBoard event files; the run's TensorBoard
answers its HTML and lists the run's scalar; `mlp tensorboard RUN` prints a URL that answers; the
launcher item "TensorBoard" is there when the environment has `tensorboard: true` and serves the
user's log directory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import jupyter_server, train_through_lab

MODEL = '''
import time


class Model:
    hyperparameters = {"steps": 3}

    def train(self):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(self.artifacts / "logs"))
        for step in range(self.hyperparameters["steps"]):
            value = summary_pb2.Summary.Value(tag="loss", simple_value=1.0 / (step + 1))
            writer.add_event(event_pb2.Event(wall_time=time.time(), step=step,
                                             summary=summary_pb2.Summary(value=[value])))
        writer.close()
        self.log_metric("loss", 1.0 / self.hyperparameters["steps"])
'''

MLP = str(Path(sys.executable).with_name("mlp"))


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[dict]:
    root = tmp_path / "root"
    (root / "logs" / "mine").mkdir(parents=True)
    (root / "model.py").write_text(MODEL)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLP_", "JUPYTERHUB_"))}
    env.update({"MLP_DATA_DIR": str(tmp_path / "data"), "MLP_BACKEND": "process", "MLP_TENSORBOARD": "1",
                "MLP_TENSORBOARD_LOGDIR": str(root / "logs")})
    log_path = tmp_path / "server.log"
    with jupyter_server(root, env, log_path, "tb") as (url, token):
        yield {"url": url, "token": token, "root": root, "log": log_path}


def _client(lab: dict) -> httpx.Client:
    return httpx.Client(base_url=lab["url"], headers={"Authorization": f"token {lab['token']}"}, timeout=180)


def _trained_run(http: httpx.Client) -> str:
    body = train_through_lab(http)
    assert body["status"] == "succeeded", body
    return body["id"]


def test_run_tensorboard_and_cli(lab):
    with _client(lab) as http:
        run_id = _trained_run(http)

        opened = http.post("mlplatform/tensorboards", json={"run": run_id})
        assert opened.status_code == 200, opened.text
        assert opened.json()["url"] == f"/mlplatform/tensorboard/{run_id}/"
        assert opened.json()["logdir"].endswith(f"runs/{run_id}/artifacts/logs")

        page = http.get(opened.json()["url"].lstrip("/"))
        assert page.status_code == 200 and "TensorBoard" in page.text, page.text[:300]
        tags = http.get(f"mlplatform/tensorboard/{run_id}/data/plugin/scalars/tags")
        assert tags.status_code == 200 and "loss" in json.dumps(tags.json()), tags.text

        # not signed in: refused; unknown run: 404 naming it
        assert httpx.get(lab["url"] + f"mlplatform/tensorboard/{run_id}/", timeout=30,
                         follow_redirects=False).status_code in (302, 403)
        missing = http.post("mlplatform/tensorboards", json={"run": "no-such-run"})
        assert missing.status_code == 404 and "no-such-run" in missing.json()["message"]
        assert http.post("mlplatform/tensorboards", json={}).status_code == 400

    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLP_", "JUPYTERHUB_"))}
    cli = subprocess.run([MLP, "tensorboard", run_id, "--json", "--jupyter-url", lab["url"],
                          "--jupyter-token", lab["token"]], capture_output=True, text=True, timeout=200, env=env)
    assert cli.returncode == 0, cli.stderr
    answer = json.loads(cli.stdout)
    assert answer["url"] == f"{lab['url'].rstrip('/')}/mlplatform/tensorboard/{run_id}/" and answer["started"]
    again = httpx.get(answer["url"], headers={"Authorization": f"token {lab['token']}"}, timeout=60)
    assert again.status_code == 200 and "TensorBoard" in again.text

    # one line and a non-zero exit for a run that is not there
    bad = subprocess.run([MLP, "tensorboard", "no-such-run", "--jupyter-url", lab["url"], "--jupyter-token",
                          lab["token"]], capture_output=True, text=True, timeout=60, env=env)
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "no-such-run" in bad.stderr


def test_launcher_item_serves_the_users_logs(lab):
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(lab["root"] / "logs" / "mine"))
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag="accuracy", simple_value=0.5)])))
    writer.close()
    with _client(lab) as http:
        info = http.get("server-proxy/servers-info")
        assert info.status_code == 200, info.text
        [server] = [s for s in info.json()["server_processes"] if s["name"] == "tensorboard"]
        assert server["launcher_entry"]["enabled"] is True and server["launcher_entry"]["title"] == "TensorBoard"
        page = http.get("tensorboard/")
        assert page.status_code == 200 and "TensorBoard" in page.text
        tags = http.get("tensorboard/data/plugin/scalars/tags")
        assert "accuracy" in json.dumps(tags.json())
