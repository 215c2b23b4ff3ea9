"""Users' credentials on the docker backend (Podman): a run's container and a deployment's
container get the user's credentials as environment variables; the value is kept encrypted."""

from __future__ import annotations

import os
import time

import httpx
import pytest

from envcheck import ENV_MODULE, sha256, token_sha

SECRET = "tok-" + os.urandom(12).hex()


@pytest.mark.docker
def test_runs_and_deployments_get_the_users_credentials(docker_server):
    server = docker_server
    with server.api() as api:
        assert api.put("/credentials/DATA_TOKEN", json={"value": SECRET}).status_code == 200
        assert api.post("/models", json={"name": "envcheck", "source": ENV_MODULE,
                                         "filename": "envcheck.py"}).status_code == 201
        run = server.wait_run(api.post("/runs", json={"model": "envcheck"}).json()["id"])
        assert run["status"] == "succeeded", run
        assert run["metrics"]["has_token"] == 1.0 and token_sha(server.data_dir, run["id"]) == sha256(SECRET)

        assert api.post("/deployments", json={"model": "envcheck", "run_id": run["id"]}).status_code == 201
        deadline = time.time() + 120
        while (dep := api.get("/deployments/envcheck").json())["status"] == "deploying":
            assert time.time() < deadline, dep
            time.sleep(0.5)
        assert dep["status"] == "ready", dep
        answer = httpx.post(dep["url"] + "/invocations", json={"key": "DATA_TOKEN"}, timeout=30)
        assert answer.json() == {"sha256": sha256(SECRET)}
        assert api.delete("/deployments/envcheck").status_code == 204

        assert api.delete("/credentials/DATA_TOKEN").status_code == 204
        after = server.wait_run(api.post("/runs", json={"model": "envcheck"}).json()["id"])
        assert after["metrics"]["has_token"] == 0.0 and token_sha(server.data_dir, after["id"]) == ""
    assert SECRET not in server.log_path.read_text()
    assert not [p for p in server.data_dir.glob("mlplatform.db*") if SECRET.encode() in p.read_bytes()]
