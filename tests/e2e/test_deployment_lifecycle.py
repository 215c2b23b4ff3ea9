"""Deployment lifecycle on the process backend, through the `mlp` CLI and the REST API: deploy v1,
a rolling update to v2 under the same name, revisions, rollback (v1's answers again), scale (a new
server with more workers), the backend's limits (0 replicas, autoscaling) as clear errors, per-user
authorization, and undeploy removing the revisions."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

SOURCE = '''
ANSWER = "{answer}"


class Model:
    hyperparameters = {{"scale": 1}}

    def train(self):
        (self.artifacts / "answer.txt").write_text(ANSWER)

    def init_predict(self):
        self.trained = (self.artifacts / "answer.txt").read_text()

    def predict(self, features: dict):
        return {{"answer": ANSWER, "trained": self.trained, "x": features.get("x")}}
'''


def assert_clean_failure(proc, *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def answer(dep: dict[str, Any]) -> str:
    reply = httpx.post(dep["url"] + "/invocations", json={"x": 1}, timeout=30)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["answer"] == body["trained"]  # the code and the artifacts of the same revision
    return body["answer"]


def gone(url: str) -> bool:
    deadline = time.time() + 15
    while time.time() < deadline:
        try:
            httpx.get(url + "/ping", timeout=2)
        except httpx.HTTPError:
            return True
        time.sleep(0.2)
    return False


def train_both(server, tmp_path: Path) -> dict[str, str]:
    """Model `echo` version 1 answers "one", version 2 answers "two"; one succeeded run of each."""
    mlp_server = server
    runs = {}
    for answer_text in ("one", "two"):
        path = tmp_path / f"echo_{answer_text}.py"
        path.write_text(SOURCE.format(answer=answer_text))
        saved = mlp_server.mlp_json("models", "save", str(path), "--name", "echo")
        run = mlp_server.mlp_json("train", f"echo:{saved['version']}", "--wait")
        assert run["status"] == "succeeded", run
        runs[answer_text] = run["id"]
    return runs


@pytest.fixture
def trained(mlp_server, tmp_path: Path) -> dict[str, str]:
    return train_both(mlp_server, tmp_path)


def test_deploy_update_revisions_rollback_scale_undeploy(mlp_server, trained):
    lifecycle(mlp_server, trained)


@pytest.mark.docker
def test_lifecycle_on_docker_backend_with_podman(docker_server, tmp_path):
    """Each change is a new container (named by generation) started before the old one is removed."""
    lifecycle(docker_server, train_both(docker_server, tmp_path))


def lifecycle(server, trained: dict[str, str]) -> None:
    backend = server.backend
    v1 = server.mlp_json("deploy", "echo:1", "--run", trained["one"], "--name", "svc", "--wait")
    assert v1["status"] == "ready" and v1["revision"] == 1 and v1["autoscale"] is None
    assert answer(v1) == "one"

    # A new version to the same name: a rolling update to revision 2; the old server is stopped.
    v2 = server.mlp_json("deploy", "echo:2", "--run", trained["two"], "--name", "svc", "--wait")
    assert v2["status"] == "ready" and v2["revision"] == 2 and v2["id"] == v1["id"], v2
    assert (v2["version"], v2["run_id"]) == ("2", trained["two"])
    assert answer(v2) == "two"
    if v2["url"] != v1["url"]:
        assert gone(v1["url"])

    revisions = server.mlp_json("deployments", "revisions", "svc")
    assert revisions["current"] == 2
    assert [(r["revision"], r["version"], r["run_id"], r["current"]) for r in revisions["items"]] == [
        (1, "1", trained["one"], False), (2, "2", trained["two"], True)]
    assert revisions["items"][0]["created_by"] == "admin" and revisions["items"][0]["hardware"]["name"]
    table = server.mlp("deployments", "revisions", "svc").stdout
    assert "2*" in table and "echo:1" in table

    # Rollback (default: the previous revision) serves v1 again, as revision 3.
    back = server.mlp_json("deployments", "rollback", "svc", "--wait")
    assert back["status"] == "ready" and back["revision"] == 3 and back["version"] == "1", back
    assert answer(back) == "one"
    items = server.mlp_json("deployments", "revisions", "svc")["items"]
    assert [(r["revision"], r["version"], r["rollback_of"]) for r in items] == [(1, "1", None), (2, "2", None), (3, "1", 1)]
    # ... and to an explicit revision.
    again = server.mlp_json("deployments", "rollback", "svc", "--revision", "2", "--wait")
    assert again["revision"] == 4 and answer(again) == "two"
    assert_clean_failure(server.mlp("deployments", "rollback", "svc", "--revision", "9", check=False),
                         "svc has no revision 9", "1, 2, 3, 4")
    assert_clean_failure(server.mlp("deployments", "rollback", "svc", "--revision", "4", check=False),
                         "already the current revision")

    # Scale: the process backend serves the replicas as worker processes of a new server.
    scaled = server.mlp_json("deployments", "scale", "svc", "--replicas", "3", "--wait")
    assert scaled["status"] == "ready" and scaled["replicas"] == 3 and scaled["revision"] == 4, scaled
    assert answer(scaled) == "two"
    if backend == "process":
        log = (server.data_dir / "deployments" / scaled["id"] / "logs.txt").read_text()
        assert f"port={scaled['url'].rsplit(':', 1)[1]} host=127.0.0.1 workers=3" in log
    assert len(server.mlp_json("deployments", "revisions", "svc")["items"]) == 4  # no revision for a scale
    if backend == "docker":  # one container left: generation 5 (v1, v2, two rollbacks, a scale)
        import docker

        engine = docker.DockerClient(base_url=os.environ["MLP_TEST_DOCKER_HOST"])
        try:
            containers = engine.containers.list(all=True, filters={"label": f"mlplatform.deployment-id={scaled['id']}"})
            assert [c.name for c in containers] == [f"mlp-dep-svc-{scaled['id'][:6]}-5"]
        finally:
            engine.close()

    # The backend's limits, each a clear one-line error that changes nothing.
    assert_clean_failure(server.mlp("deployments", "scale", "svc", "--replicas", "0", check=False),
                         f"{backend} backend cannot scale deployment svc to 0 replicas")
    assert_clean_failure(server.mlp("deployments", "scale", "svc", "--replicas", "65", check=False),
                         "'replicas' must be an integer from 0 to 64, got 65")
    assert_clean_failure(server.mlp("deployments", "autoscale", "svc", "--min", "1", "--max", "3", check=False),
                         "Autoscaling needs the kubernetes backend", f"{backend} backend")
    assert_clean_failure(server.mlp("deploy", "echo:1", "--run", trained["one"], "--name", "svc",
                                    "--min-replicas", "1", "--max-replicas", "2", check=False),
                         "Autoscaling needs the kubernetes backend")
    assert_clean_failure(server.mlp("deployments", "autoscale", "svc", check=False), "--min and --max", "--off")
    now = server.mlp_json("deployments", "show", "svc")
    assert (now["revision"], now["replicas"], now["url"], now["status"]) == (4, 3, scaled["url"], "ready")
    assert len(server.mlp_json("deployments", "revisions", "svc")["items"]) == 4

    # Undeploy: the server stops and the revisions go with the deployment.
    server.mlp("deployments", "delete", "svc")
    assert gone(scaled["url"])
    assert_clean_failure(server.mlp("deployments", "revisions", "svc", check=False), "No deployment named 'svc'")
    fresh = server.mlp_json("deploy", "echo:2", "--run", trained["two"], "--name", "svc", "--wait")
    assert fresh["revision"] == 1 and answer(fresh) == "two"
    assert len(server.mlp_json("deployments", "revisions", "svc")["items"]) == 1
    server.mlp("deployments", "delete", "svc")


def test_bad_requests_and_other_users(mlp_server, trained):
    server = mlp_server
    server.mlp("users", "create", "bob")
    bob = server.mlp_json("users", "token", "bob")["token"]
    with server.api() as api:
        assert api.post("/deployments/nope/rollback", json={}).status_code == 404
        dep = api.post("/deployments", json={"model": "echo", "version": "1", "run_id": trained["one"],
                                             "name": "mine"}).json()
        assert dep["revision"] == 1
        cases = [
            ("/scale", {}, "Give 'replicas'"),
            ("/scale", {"replicas": 2, "autoscale": {"min": 1, "max": 2}}, "not both"),
            ("/scale", {"replicas": "2"}, "'replicas' must be an integer"),
            ("/scale", {"autoscale": {"min": 3, "max": 2}}, "'autoscale.min' (3) must not be more than"),
            ("/scale", {"autoscale": {"min": 1}}, "'autoscale.max' is required"),
            ("/scale", {"autoscale": {"min": 1, "max": 2, "cpu": 5}}, "Unknown field(s) in 'autoscale': cpu"),
            ("/scale", {"autoscale": {"min": 1, "max": 2, "target_cpu": 0}}, "'autoscale.target_cpu'"),
            ("/scale", {"replica": 2}, "Unknown field(s) replica"),
            ("/rollback", {"revision": "one"}, "'revision' must be an integer"),
            ("/rollback", {}, "no revision before its current revision 1"),
        ]
        for path, body, message in cases:
            reply = api.post(f"/deployments/mine{path}", json=body)
            assert reply.status_code == 400 and message in reply.json()["message"], (path, body, reply.text)
        reply = api.post("/deployments", json={"model": "echo", "run_id": trained["one"], "name": "mine",
                                               "autoscale": {"min": 2, "max": 1}})
        assert reply.status_code == 400 and "'autoscale.min' (2)" in reply.json()["message"]
        assert api.get("/deployments/mine/revisions").json()["total"] == 1

    # Another user sees none of it and cannot take the name.
    with server.api(bob) as api:
        for method, path, body in (("GET", "/revisions", None), ("POST", "/rollback", {}),
                                   ("POST", "/scale", {"replicas": 2})):
            reply = api.request(method, f"/deployments/mine{path}", json=body)
            assert reply.status_code == 404 and "No deployment named 'mine'" in reply.json()["message"], reply.text
    with server.api() as api:
        assert api.get("/deployments/mine/revisions").json()["total"] == 1
        api.delete("/deployments/mine")
