"""Credentials through the REST API and the `mlp` CLI on a real `mlp server` (process backend):
set → listed by name only → a training run and a deployment of the user see the value in their
environment (proved by its SHA-256, never the value) → deleted → gone. Other users see and touch
none of it, and the value is in no API answer, no server log and not in clear in the database."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

import envcheck
from envcheck import ENV_MODULE as MODULE
from envcheck import sha256

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ghp_" + os.urandom(12).hex() + "-pa55!"
SECRET_SHA = sha256(SECRET)


class Recorder:
    """Every answer the API gave in this test, to check the value is in none of them."""

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def hook(self, response: httpx.Response) -> None:
        response.read()
        self.bodies.append(response.text)


def client(server: Any, token: str, recorder: Recorder) -> httpx.Client:
    return httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"},
                        timeout=60, event_hooks={"response": [recorder.hook]})


def train(server: Any, api: httpx.Client) -> dict[str, Any]:
    started = api.post("/runs", json={"model": "envcheck"})
    assert started.status_code == 201, started.text
    run = server.wait_run(started.json()["id"])
    assert run["status"] == "succeeded", run
    return run


def token_sha(server: Any, run: dict[str, Any]) -> str:
    return envcheck.token_sha(server.data_dir, run["id"])


def mlp(server: Any, token: str, *args: str, input: str | None = None,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "MLP_URL": server.url, "MLP_TOKEN": token, **(env or {})}
    return subprocess.run([sys.executable, "-m", "mlplatform_server.cli", *args], capture_output=True, text=True,
                          env=full_env, cwd=ROOT, timeout=120, input=input if input is not None else "")


def test_credentials_reach_runs_and_deployments_never_answers(mlp_server):
    server = mlp_server
    rec = Recorder()
    admin = client(server, server.token, rec)
    tokens = {}
    for name in ("alice", "bob"):
        assert admin.post("/users", json={"name": name}).status_code == 201
        tokens[name] = admin.post(f"/users/{name}/tokens", json={}).json()["token"]
    alice, bob = client(server, tokens["alice"], rec), client(server, tokens["bob"], rec)

    # bad input: 400 with what was wrong; nothing written
    for path, body, message in [
        ("/credentials/data-token", {"value": "x"}, "expected an environment variable name"),
        ("/credentials/MLP_RUN_TOKEN", {"value": "x"}, "reserved for the platform"),
        ("/credentials/DATA_TOKEN", {"value": ""}, "must not be empty"),
        ("/credentials/DATA_TOKEN", {}, "'value' must be a string, got null"),
        ("/credentials/DATA_TOKEN", {"value": 12}, "must be a string, got a number"),
        ("/credentials/DATA_TOKEN", {"value": "x" * 20000}, "larger than 16384 bytes"),
        ("/credentials/DATA_TOKEN", {"value": "x", "user_name": "bob"}, "Unknown field(s) user_name"),
    ]:
        answer = alice.put(path, json=body)
        assert answer.status_code == 400 and message in answer.json()["message"], (path, answer.text)
    assert alice.put("/credentials/DATA_TOKEN", content=b"{oops").status_code == 400
    assert alice.get("/credentials").json() == {"user": "alice", "items": []}
    assert httpx.get(server.url + "/api/v1/credentials").status_code == 401

    # set: the answer and the list carry the name and the time only
    put = alice.put("/credentials/DATA_TOKEN", json={"value": SECRET})
    assert put.status_code == 200, put.text
    assert put.json()["key"] == "DATA_TOKEN" and put.json()["user"] == "alice" and put.json()["created"] is True
    listed = alice.get("/credentials").json()
    assert listed["user"] == "alice" and [i["key"] for i in listed["items"]] == ["DATA_TOKEN"]
    assert set(listed["items"][0]) == {"key", "updated_at"}
    assert [i["key"] for i in admin.get("/credentials", params={"user": "alice"}).json()["items"]] == ["DATA_TOKEN"]

    # other users: not theirs to see or delete
    assert bob.get("/credentials").json() == {"user": "bob", "items": []}
    assert bob.get("/credentials", params={"user": "alice"}).status_code == 403
    assert bob.put("/credentials/DATA_TOKEN", params={"user": "alice"}, json={"value": "x"}).status_code == 403
    assert bob.delete("/credentials/DATA_TOKEN", params={"user": "alice"}).status_code == 403
    missing = bob.delete("/credentials/DATA_TOKEN")
    assert missing.status_code == 404 and "bob has no credential named 'DATA_TOKEN'" in missing.json()["message"]
    assert admin.get("/credentials", params={"user": "nobody"}).status_code == 404

    # alice's run and deployment see the value; a run launched by someone else does not
    saved = alice.post("/models", json={"name": "envcheck", "source": MODULE, "filename": "envcheck.py"})
    assert saved.status_code == 201, saved.text
    run = train(server, alice)
    assert run["metrics"]["has_token"] == 1.0 and token_sha(server, run) == SECRET_SHA
    other = train(server, admin)
    assert other["metrics"]["has_token"] == 0.0 and token_sha(server, other) == ""

    dep = alice.post("/deployments", json={"model": "envcheck", "run_id": run["id"]})
    assert dep.status_code == 201, dep.text
    deadline = time.time() + 90
    while (state := alice.get("/deployments/envcheck").json())["status"] == "deploying":
        assert time.time() < deadline, state
        time.sleep(0.3)
    assert state["status"] == "ready", state
    answer = httpx.post(state["url"] + "/invocations", json={"key": "DATA_TOKEN"}, timeout=30)
    assert answer.json() == {"sha256": SECRET_SHA}
    assert alice.delete("/deployments/envcheck").status_code == 204

    # delete: gone from the list and from the next run
    assert alice.delete("/credentials/DATA_TOKEN").status_code == 204
    assert alice.get("/credentials").json()["items"] == []
    assert alice.delete("/credentials/DATA_TOKEN").status_code == 404
    after = train(server, alice)
    assert after["metrics"]["has_token"] == 0.0

    # the value: in no answer, no server log, not in clear in the database; the key file is 0600
    assert len(rec.bodies) > 30
    assert not [b for b in rec.bodies if SECRET in b]
    assert SECRET not in server.log_path.read_text()
    for path in server.data_dir.glob("mlplatform.db*"):
        assert SECRET.encode() not in path.read_bytes(), path
    assert stat.S_IMODE((server.data_dir / "credentials.key").stat().st_mode) == 0o600


def test_cli_reads_values_from_stdin_env_or_prompt_never_argv(mlp_server):
    server = mlp_server
    token = server.token

    done = mlp(server, token, "credentials", "set", "GITHUB_TOKEN", "--value-stdin", "--json", input=SECRET + "\n")
    assert done.returncode == 0, done.stderr
    assert SECRET not in done.stdout + done.stderr
    env = mlp(server, token, "credentials", "set", "DB_PASSWORD", "--from-env", "MY_PW", env={"MY_PW": "pw\nline2"})
    assert env.returncode == 0 and env.stdout.strip() == "set DB_PASSWORD for admin", env

    listed = mlp(server, token, "credentials", "list", "--json")
    assert listed.returncode == 0
    items = json.loads(listed.stdout)["items"]
    assert [i["key"] for i in items] == ["DB_PASSWORD", "GITHUB_TOKEN"]
    assert SECRET not in listed.stdout and "pw" not in listed.stdout.replace("DB_PASSWORD", "")
    table = mlp(server, token, "credentials", "list").stdout
    assert table.splitlines()[0].split() == ["KEY", "UPDATED_AT"] and "GITHUB_TOKEN" in table

    # the value as an argument is refused (it would stay in shell history)
    positional = mlp(server, token, "credentials", "set", "OTHER", "plain-value")
    assert positional.returncode != 0 and "unexpected extra argument" in positional.stderr
    # no value and no terminal: one line saying how to give it
    none = mlp(server, token, "credentials", "set", "OTHER")
    assert none.returncode == 1 and none.stderr.startswith("error: no value for OTHER: pipe it in with --value-stdin")
    unset = mlp(server, token, "credentials", "set", "OTHER", "--from-env", "NOT_SET_ANYWHERE")
    assert unset.returncode == 1 and unset.stderr == "error: the environment variable NOT_SET_ANYWHERE is not set\n"
    both = mlp(server, token, "credentials", "set", "OTHER", "--value-stdin", "--from-env", "X", input="v")
    assert both.returncode == 1 and "not both" in both.stderr
    bad = mlp(server, token, "credentials", "set", "bad-name", "--value-stdin", input="v")
    assert bad.returncode == 1 and "expected an environment variable name" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
    assert mlp(server, token, "credentials", "list", "--user", "nobody").stderr == "error: No user named 'nobody'\n"

    # the values went through exactly (one final newline dropped from stdin, none from the env)
    with server.api() as api:
        api.post("/models", json={"name": "envcheck", "source": MODULE, "filename": "envcheck.py"})
        run = api.post("/runs", json={"model": "envcheck", "hyperparameters": {"key": "GITHUB_TOKEN"}}).json()
        assert server.wait_run(run["id"])["metrics"]["has_token"] == 1.0
        assert token_sha(server, run) == SECRET_SHA
        run = api.post("/runs", json={"model": "envcheck", "hyperparameters": {"key": "DB_PASSWORD"}}).json()
        server.wait_run(run["id"])
        assert token_sha(server, run) == sha256("pw\nline2")

    deleted = mlp(server, token, "credentials", "delete", "GITHUB_TOKEN", "--json")
    assert deleted.returncode == 0 and json.loads(deleted.stdout) == {"deleted": "GITHUB_TOKEN"}
    again = mlp(server, token, "credentials", "delete", "GITHUB_TOKEN")
    assert again.returncode == 1 and again.stderr == "error: admin has no credential named 'GITHUB_TOKEN'\n"
    assert SECRET not in server.log_path.read_text()
