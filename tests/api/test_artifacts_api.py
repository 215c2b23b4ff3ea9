"""A run's artifacts through the REST API and the `mlp` CLI on a real `mlp server` (process backend):
a training run writes TensorBoard events under artifacts/logs, a binary file larger than one chunk
and two symlinks (one inside, one to /etc/passwd). Its owner and an admin list and download them
byte for byte; another user gets the same 404 as for the run itself; paths that try to leave the
artifacts get a 400 and no bytes; unknown files a 404; the CLI prints `error:` and exits 1."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[2]

MODEL = '''
import os
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
        (self.artifacts / "weights").mkdir()
        (self.artifacts / "weights" / "model.bin").write_bytes(bytes(range(256)) * 3000 + b"end")
        os.symlink("/etc/passwd", self.artifacts / "escape")
        os.symlink("weights/model.bin", self.artifacts / "inside")
        self.log_metric("loss", 1.0 / self.hyperparameters["steps"])
'''


def api(server: Any, token: str) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=60)


def mlp(server: Any, token: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLP_URL": server.url, "MLP_TOKEN": token}
    return subprocess.run([sys.executable, "-m", "mlplatform_server.cli", *args], capture_output=True, text=True,
                          env=env, cwd=ROOT, timeout=120)


def test_artifacts_list_download_and_refusals(mlp_server, tmp_path):
    server = mlp_server
    with api(server, server.token) as admin:
        tokens = {}
        for name in ("alice", "bob"):
            assert admin.post("/users", json={"name": name}).status_code == 201
            tokens[name] = admin.post(f"/users/{name}/tokens", json={}).json()["token"]
    alice, bob, admin = api(server, tokens["alice"]), api(server, tokens["bob"]), api(server, server.token)
    saved = alice.post("/models", json={"name": "arts", "source": MODEL, "filename": "model.py"})
    assert saved.status_code == 201, saved.text
    started = alice.post("/runs", json={"model": "arts"})
    assert started.status_code == 201, started.text
    run_id = started.json()["id"]
    assert server.wait_run(run_id)["status"] == "succeeded"
    folder = server.data_dir / "runs" / run_id / "artifacts"
    weights = (folder / "weights" / "model.bin").read_bytes()

    # list: every file with size and mtime, sorted; the symlink to /etc/passwd is not listed
    listed = alice.get(f"/runs/{run_id}/artifacts")
    assert listed.status_code == 200, listed.text
    items = {f["path"]: f for f in listed.json()["items"]}
    [event] = [p for p in items if p.startswith("logs/events.out.tfevents.")]
    assert set(items) == {event, "weights/model.bin", "inside"}
    assert items["weights/model.bin"]["size"] == len(weights) == 768003
    assert abs(items[event]["mtime"] - (folder / event).stat().st_mtime) < 1e-3
    logs = alice.get(f"/runs/{run_id}/artifacts", params={"prefix": "logs/"}).json()
    assert [f["path"] for f in logs["items"]] == [event] and logs["prefix"] == "logs/"

    # download: the bytes, streamed as application/octet-stream; admin too; symlink inside works
    got = alice.get(f"/runs/{run_id}/artifacts/weights/model.bin")
    assert got.status_code == 200 and got.content == weights
    assert got.headers["content-type"] == "application/octet-stream"
    assert admin.get(f"/runs/{run_id}/artifacts/{event}").content == (folder / event).read_bytes()
    assert alice.get(f"/runs/{run_id}/artifacts/inside").content == weights
    assert admin.get(f"/runs/{run_id}/artifacts").json()["items"] == listed.json()["items"]

    # another user: the same 404 as for the run itself
    not_theirs = bob.get(f"/runs/{run_id}")
    assert not_theirs.status_code == 404
    for path in (f"/runs/{run_id}/artifacts", f"/runs/{run_id}/artifacts/weights/model.bin"):
        answer = bob.get(path)
        assert answer.status_code == 404 and answer.json() == not_theirs.json(), answer.text

    # leaving the artifacts: 400 with a JSON message, and nothing of the target in the answer
    raw = httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {tokens['alice']}"}, timeout=60)
    for path in ("..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd", "%2Fetc%2Fpasswd", "weights/..%2F..%2Fresult.json",
                 "escape", "%2E%2E/result.json"):
        answer = raw.get(f"/api/v1/runs/{run_id}/artifacts/{path}")
        assert answer.status_code == 400, (path, answer.text)
        body = answer.json()
        assert body["error"] == "invalid_input" and body["message"], body
        assert "root:" not in answer.text and "status" not in answer.text
    assert alice.get(f"/runs/{run_id}/artifacts", params={"prefix": "../"}).status_code == 400
    missing = alice.get(f"/runs/{run_id}/artifacts/weights/nope.bin")
    assert missing.status_code == 404 and "nope.bin" in missing.json()["message"]
    assert alice.get(f"/runs/{run_id}/artifacts/weights").status_code == 404  # a folder is no file
    assert alice.get("/runs/no-such-run/artifacts").status_code == 404
    assert httpx.get(f"{server.url}/api/v1/runs/{run_id}/artifacts", timeout=30).status_code == 401

    # the CLI: list, download some, download all
    listing = mlp(server, tokens["alice"], "runs", "artifacts", run_id, "--prefix", "logs/", "--json")
    assert listing.returncode == 0, listing.stderr
    assert [f["path"] for f in json.loads(listing.stdout)["items"]] == [event]
    human = mlp(server, tokens["alice"], "runs", "artifacts", run_id)
    assert human.returncode == 0 and "weights/model.bin" in human.stdout and "768003" in human.stdout
    out = tmp_path / "out"
    one = mlp(server, tokens["alice"], "runs", "download", run_id, "weights/model.bin", "-o", str(out))
    assert one.returncode == 0, one.stderr
    assert one.stdout.strip() == str(out / "weights" / "model.bin")
    assert (out / "weights" / "model.bin").read_bytes() == weights
    every = mlp(server, tokens["alice"], "runs", "download", run_id, "--all", "-o", str(tmp_path / "all"), "--json")
    assert every.returncode == 0, every.stderr
    assert {f["path"] for f in json.loads(every.stdout)["files"]} == set(items)
    for path in items:
        assert hashlib.sha256((tmp_path / "all" / path).read_bytes()).digest() == \
            hashlib.sha256((folder / path).read_bytes()).digest()
    assert not list((tmp_path / "all").rglob("*.part"))

    # the CLI on bad input: one `error:` line, exit 1, nothing written
    for args, words in [
        (("runs", "artifacts", "no-such-run"), "no-such-run"),
        (("runs", "download", run_id, "weights/nope.bin", "-o", str(tmp_path / "bad")), "nope.bin"),
        (("runs", "download", run_id, "../../etc/passwd", "-o", str(tmp_path / "bad")), ".."),
        (("runs", "download", run_id, "/etc/passwd", "-o", str(tmp_path / "bad")), "absolute"),
        (("runs", "download", run_id, "-o", str(tmp_path / "bad")), "--all"),
    ]:
        bad = mlp(server, tokens["alice"], *args)
        assert bad.returncode == 1, (args, bad.stdout, bad.stderr)
        assert bad.stderr.startswith("error: ") and words in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    bad = mlp(server, tokens["bob"], "runs", "download", run_id, "weights/model.bin", "-o", str(tmp_path / "bad"))
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and run_id in bad.stderr
    assert not (tmp_path / "bad").exists() or not any((tmp_path / "bad").rglob("*"))
    for client in (alice, bob, admin, raw):
        client.close()


def test_artifacts_in_object_storage_are_a_clear_501(mlp_server_factory, tmp_path):
    """`--artifacts-uri`: the platform holds no copy of a run's files; it says so (the run is recorded
    as failed to start: no cluster answers at 127.0.0.1:1, which nothing here needs)."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "c",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:1", "insecure-skip-tls-verify": True}}],
        "users": [{"name": "u", "user": {"token": "x"}}],
        "contexts": [{"name": "c", "context": {"cluster": "none", "user": "u", "namespace": "ml"}}],
    }))
    server = mlp_server_factory(backend="kubernetes", extra_args=[
        "--namespace", "ml", "--artifacts-uri", "s3://bucket/mlp", "--kubeconfig", str(kubeconfig)])
    with api(server, server.token) as admin:
        assert admin.post("/models", json={"name": "arts", "source": MODEL, "filename": "model.py"}).status_code == 201
        assert admin.post("/runs", json={"model": "arts"}).status_code == 502
        [run] = admin.get("/runs").json()["items"]
        for path in (f"/runs/{run['id']}/artifacts", f"/runs/{run['id']}/artifacts/logs/x"):
            answer = admin.get(path)
            assert answer.status_code == 501, answer.text
            assert answer.json()["error"] == "not_supported" and "object storage" in answer.json()["message"]
        assert admin.get("/runs/no-such-run/artifacts").status_code == 404
    bad = mlp(server, server.token, "runs", "artifacts", run["id"])
    assert bad.returncode == 1 and bad.stderr.startswith("error: ") and "object storage" in bad.stderr
