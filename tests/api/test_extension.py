"""The Jupyter server extension, through a real Jupyter server (pytest-jupyter).

In-process mode end to end with the process backend: the extension reads the
notebook through Jupyter's contents manager, relays to the platform it started
in the same event loop, and the run trains for real in a subprocess.

The tests are synchronous and drive pytest-jupyter's loop themselves, so they
do not depend on which asyncio plugin runs coroutine tests.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from tornado.httpclient import AsyncHTTPClient, HTTPClientError

pytest_plugins = ["pytest_jupyter.jupyter_server"]

MODEL_SOURCE = '''
import json

class Model:
    hyperparameters = {"C": 1.0, "max_iter": 10}

    def train(self):
        (self.artifacts / "weights.json").write_text(json.dumps(self.hyperparameters))
        (self.artifacts / "blob.bin").write_bytes(bytes(range(256)) * 8192)  # 2 MiB
        print("training with", self.hyperparameters)
        self.log_metric("accuracy", 0.9)

    def predict(self, features):
        return {"label": 1, "C": self.hyperparameters["C"]}
'''


def notebook_json(*sources: str) -> str:
    cells = [
        {"id": "intro", "cell_type": "markdown", "metadata": {}, "source": "# A tiny model"},
        *(
            {"id": f"code-{i}", "cell_type": "code", "execution_count": None, "metadata": {}, "outputs": [],
             "source": text}
            for i, text in enumerate(sources)
        ),
    ]
    return json.dumps(
        {
            "cells": cells,
            "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
    )


# -- fixtures ------------------------------------------------------------------
@pytest.fixture
def ext_platform_url() -> str:
    """Empty: in-process platform. Tests parametrize it for relay mode."""
    return ""


@pytest.fixture
def ext_data_dir(tmp_path) -> Path:
    return tmp_path / "mlp-data"


@pytest.fixture
def ext_options() -> dict[str, Any]:
    """More MLPlatform options; tests parametrize it."""
    return {}


@pytest.fixture
def jp_server_config(ext_platform_url, ext_data_dir, ext_options, monkeypatch):
    for name in ("MLP_URL", "MLP_TOKEN", "MLP_DATA_DIR", "MLP_BACKEND", "MLP_CONFIG", "MLP_DB_URL"):
        monkeypatch.delenv(name, raising=False)
    return {
        "ServerApp": {"jpserver_extensions": {"mlplatform_server": True}},
        "MLPlatform": {
            "data_dir": str(ext_data_dir),
            "backend": "process",
            "platform_url": ext_platform_url,
            **ext_options,
        },
    }


@pytest.fixture
def ext_call(jp_fetch, jp_asyncio_loop):
    """call(method, *path, body=..., params=..., headers=...) → (status, parsed body); never raises on 4xx/5xx."""

    def call(method: str, *parts: str, body: Any = None, raw: bytes | None = None, **kwargs: Any):
        async def go():
            data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
            if method == "POST" and data is None:
                data = b"{}"
            try:
                response = await jp_fetch("mlplatform", *parts, method=method, body=data, **kwargs)
            except HTTPClientError as exc:
                response = exc.response
                assert response is not None, exc
            text = response.body.decode() if response.body else ""
            ctype = response.headers.get("Content-Type", "")
            parsed = json.loads(text) if text and ctype.startswith("application/json") else text
            return response.code, parsed

        return jp_asyncio_loop.run_until_complete(go())

    return call


@pytest.fixture
def ext_notebook(jp_root_dir):
    """Write a notebook (or .py) into the Jupyter root; returns its API path."""

    def write(path: str = "work/model.ipynb", text: str | None = None) -> str:
        target = Path(jp_root_dir) / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text if text is not None else notebook_json("import json", MODEL_SOURCE))
        return path

    return write


@pytest.fixture
def ext_app(jp_serverapp):
    return jp_serverapp.extension_manager.extension_points["mlplatform"].app


@pytest.fixture
def ext_wait_run(ext_call, jp_asyncio_loop):
    """Poll a run through the relay until it ends; the loop keeps turning in between
    (the in-process platform, its reconciler and the run's metric posts all live on it)."""

    def wait(run_id: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.time() + timeout
        run: dict[str, Any] = {}
        while time.time() < deadline:
            status, run = ext_call("GET", "api", "runs", run_id)
            assert status == 200, run
            if run["status"] in ("succeeded", "failed", "cancelled"):
                return run
            jp_asyncio_loop.run_until_complete(asyncio.sleep(0.2))
        raise AssertionError(f"run {run_id} did not end in {timeout}s: {run}")

    return wait


# -- in-process mode -----------------------------------------------------------
def test_config_in_process(ext_call, ext_app):
    status, body = ext_call("GET", "config")
    assert status == 200, body
    assert body["in_process"] is True
    assert body["platform_url"].startswith("http://127.0.0.1:")
    assert body["user"]["name"] == "admin" and body["user"]["admin"] is True
    # the platform token is never handed out
    assert ext_app.token and ext_app.token not in json.dumps(body)


def test_save_train_end_to_end(ext_call, ext_notebook, ext_data_dir, ext_wait_run, jp_fetch, jp_asyncio_loop):
    path = ext_notebook()

    status, found = ext_call("POST", "inspect", body={"path": path})
    assert status == 200, found
    hps = {h["name"]: h for h in found["hyperparameters"]}
    assert set(hps) == {"C", "max_iter"}
    assert "train" in found["methods"] and "predict" in found["methods"]

    status, saved = ext_call("POST", "models", body={"path": path, "name": "tiny"})
    assert status == 201, saved
    assert saved["model"] == "tiny" and saved["version"] == "1" and saved["source_name"] == "model.ipynb"
    assert saved["git_commit"] is None  # the root is no git repository

    # saving the same content again returns the existing version
    status, again = ext_call("POST", "models", body={"path": path, "name": "tiny"})
    assert status == 200 and again["version"] == "1" and again["created"] is False

    status, run = ext_call(
        "POST", "api", "runs", body={"model": "tiny", "kind": "train", "hyperparameters": {"C": "0.5"}}
    )
    assert status == 201, run
    run = ext_wait_run(run["id"])
    assert run["status"] == "succeeded", run
    assert run["hyperparameters"]["C"] == 0.5 and run["hyperparameters"]["max_iter"] == 10
    assert run["metrics"]["accuracy"] == pytest.approx(0.9)

    # the relay keeps query strings and answers with the platform's body
    status, page = ext_call("GET", "api", "runs", params={"model": "tiny", "limit": "1"})
    assert status == 200 and [r["id"] for r in page["items"]] == [run["id"]]
    status, metrics = ext_call("GET", "api", "runs", run["id"], "metrics", params={"name": "accuracy"})
    # recorded once (not a second time when the platform reads the kept log back)
    assert status == 200 and [m["value"] for m in metrics["items"]] == [pytest.approx(0.9)]

    # logs, plain and streamed (the run has ended, so the stream ends too)
    status, text = ext_call("GET", "api", "runs", run["id"], "logs")
    assert status == 200 and "training with" in text
    status, streamed = ext_call("GET", "api", "runs", run["id"], "logs", params={"follow": "true"})
    assert status == 200 and "training with" in streamed

    artifacts = list((ext_data_dir / "runs" / run["id"]).rglob("weights.json"))
    assert artifacts and json.loads(artifacts[0].read_text())["C"] == 0.5

    # an artifact file, relayed as the platform streams it (chunked, never whole in the server's memory)
    async def download(path: str):
        return await jp_fetch("mlplatform", "api", "runs", run["id"], "artifacts", path, raise_error=False)

    blob = jp_asyncio_loop.run_until_complete(download("blob.bin"))
    assert blob.code == 200 and blob.body == bytes(range(256)) * 8192
    assert blob.headers.get("Transfer-Encoding") == "chunked" and "Content-Length" not in blob.headers
    assert blob.headers["Content-Disposition"] == "attachment; filename*=UTF-8''blob.bin"
    missing = jp_asyncio_loop.run_until_complete(download("nope.bin"))
    assert missing.code == 404 and json.loads(missing.body)["error"] == "not_found"


def test_bad_hyperparameter_relays_platform_400(ext_call, ext_notebook, ext_app, jp_asyncio_loop):
    ext_call("POST", "models", body={"path": ext_notebook(), "name": "tiny"})
    status, body = ext_call(
        "POST", "api", "runs", body={"model": "tiny", "kind": "train", "hyperparameters": {"C": "not-a-number"}}
    )
    assert status == 400, body
    assert "C" in body["message"]
    # exactly what the platform says, unchanged
    request = {"model": "tiny", "kind": "train", "hyperparameters": {"C": "not-a-number"}}
    assert _direct(ext_app, jp_asyncio_loop, "POST", "runs", request) == (400, body)

    status, body = ext_call("POST", "api", "runs", body={"model": "tiny", "hyperparameters": {"nope": 1}})
    assert status == 400 and "nope" in body["message"]


def test_relay_keeps_platform_errors(ext_call):
    status, body = ext_call("GET", "api", "runs", "does-not-exist")
    assert status == 404 and "does-not-exist" in body["message"]
    status, body = ext_call("GET", "api", "no-such-endpoint")
    assert status == 404 and body["error"] == "not_found"
    status, body = ext_call("DELETE", "api", "deployments", "nothing-here")
    assert status == 404, body
    status, body = ext_call("POST", "api", "runs", raw=b"{not json")
    assert status == 400 and "JSON" in body["message"]


def test_credentials_through_the_relay(ext_call):
    status, body = ext_call("PUT", "api", "credentials", "GITHUB_TOKEN", body={"value": "t0k-relayed"})
    assert status == 200 and body["key"] == "GITHUB_TOKEN", body
    assert "t0k-relayed" not in json.dumps(body)
    status, body = ext_call("GET", "api", "credentials")
    assert status == 200 and [i["key"] for i in body["items"]] == ["GITHUB_TOKEN"]
    status, body = ext_call("PUT", "api", "credentials", "bad-name", body={"value": "x"})
    assert status == 400 and "environment variable name" in body["message"]
    assert ext_call("DELETE", "api", "credentials", "GITHUB_TOKEN")[0] == 204
    assert ext_call("DELETE", "api", "credentials", "GITHUB_TOKEN")[0] == 404


def test_missing_notebook_is_404(ext_call):
    status, body = ext_call("POST", "inspect", body={"path": "nowhere/missing.ipynb"})
    assert status == 404 and body["error"] == "not_found"
    assert "nowhere/missing.ipynb" in body["message"]
    status, body = ext_call("POST", "models", body={"path": "nowhere/missing.ipynb", "name": "tiny"})
    assert status == 404 and "nowhere/missing.ipynb" in body["message"]


def test_bad_bodies_are_400(ext_call, ext_notebook):
    status, body = ext_call("POST", "inspect", raw=b"[1, 2")
    assert status == 400 and body["error"] == "invalid_input"
    status, body = ext_call("POST", "inspect", body=["a", "list"])
    assert status == 400 and "JSON object" in body["message"]
    status, body = ext_call("POST", "inspect", body={})
    assert status == 400 and "path" in body["message"]
    status, body = ext_call("POST", "inspect", body={"path": "data.csv"})
    assert status == 400 and ".ipynb" in body["message"]
    status, body = ext_call("POST", "models", body={"path": ext_notebook()})
    assert status == 400 and "name" in body["message"]
    # the platform's own validation comes back unchanged
    status, body = ext_call("POST", "models", body={"path": ext_notebook(), "name": "Not A Name"})
    assert status == 400 and "Invalid model name" in body["message"]


def test_unauthenticated_requests_are_refused(ext_call):
    for method, parts, body in (
        ("GET", ("config",), None),
        ("POST", ("inspect",), {"path": "x.ipynb"}),
        ("POST", ("models",), {"path": "x.ipynb", "name": "x"}),
        ("GET", ("api", "runs"), None),
        ("DELETE", ("api", "deployments", "x"), None),
    ):
        status, answer = ext_call(method, *parts, body=body, headers={"Authorization": ""})
        assert status in (401, 403), (method, parts, status, answer)
    status, answer = ext_call("GET", "api", "runs", headers={"Authorization": "token wrong"})
    assert status in (401, 403), answer


def test_python_module_and_version(ext_call, ext_notebook):
    path = ext_notebook("pkg/model.py", MODEL_SOURCE)
    status, found = ext_call("POST", "inspect", body={"path": path})
    assert status == 200 and {h["name"] for h in found["hyperparameters"]} == {"C", "max_iter"}
    status, saved = ext_call("POST", "models", body={"path": path, "name": "tiny-py", "version": "v1.0"})
    assert status == 201, saved
    assert saved["version"] == "v1.0" and saved["source_name"] == "model.py"
    status, model = ext_call("GET", "api", "models", "tiny-py")
    assert status == 200 and model["versions"] == ["v1.0"]


def test_save_records_git_commit(ext_call, ext_notebook, jp_root_dir):
    path = ext_notebook("repo/sub/model.ipynb")
    repo = Path(jp_root_dir) / "repo"
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run([*git[:3], "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "model"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()

    status, saved = ext_call("POST", "models", body={"path": path, "name": "tracked"})
    assert status == 201, saved
    assert saved["git_commit"] == head


SLOW_SOURCE = """
import time

class Model:
    hyperparameters = {"pause": 2.0}

    def train(self):
        print("first line", flush=True)
        time.sleep(self.hyperparameters["pause"])
        print("second line", flush=True)
        self.log_metric("accuracy", 0.5)
"""


def test_follow_logs_streams_while_running(ext_call, ext_notebook, ext_wait_run, jp_fetch, jp_asyncio_loop):
    path = ext_notebook("slow.ipynb", notebook_json(SLOW_SOURCE))
    status, saved = ext_call("POST", "models", body={"path": path, "name": "slow"})
    assert status == 201, saved
    status, run = ext_call("POST", "api", "runs", body={"model": "slow", "hyperparameters": {"pause": 3}})
    assert status == 201, run

    chunks: list[tuple[float, str]] = []

    async def follow():
        response = await jp_fetch(
            "mlplatform", "api", "runs", run["id"], "logs",
            params={"follow": "true"},
            streaming_callback=lambda chunk: chunks.append((time.monotonic(), chunk.decode())),
            request_timeout=60,
        )
        return response.code, response.headers.get("Content-Type", "")

    code, ctype = jp_asyncio_loop.run_until_complete(follow())
    assert code == 200 and ctype.startswith("text/plain")
    seen, first_at, second_at = "", None, None
    for at, chunk in chunks:
        seen += chunk
        if first_at is None and "first line" in seen:
            first_at = at
        if second_at is None and "second line" in seen:
            second_at = at
    assert first_at is not None and second_at is not None, seen
    assert second_at - first_at > 1.5, "the first line only came with the end of the run: not streamed"
    assert ext_wait_run(run["id"])["status"] == "succeeded"


# -- relay mode ----------------------------------------------------------------
@pytest.mark.parametrize("ext_platform_url", ["http://127.0.0.1:1"])
def test_unreachable_platform_is_502(ext_call, ext_notebook, ext_data_dir):
    status, body = ext_call("GET", "config")
    assert status == 502, body
    assert body["error"] == "platform_unreachable"
    assert "http://127.0.0.1:1" in body["message"]
    status, body = ext_call("GET", "api", "runs")
    assert status == 502 and body["error"] == "platform_unreachable"
    status, body = ext_call("POST", "inspect", body={"path": ext_notebook()})
    assert status == 502 and body["error"] == "platform_unreachable"
    assert not ext_data_dir.exists()  # nothing started in-process


@pytest.mark.parametrize("ext_options", [{"config_file": "/nonexistent/platform.yaml"}])
def test_platform_that_cannot_start_is_503(ext_call, jp_fetch, jp_asyncio_loop):
    status, body = ext_call("GET", "config")
    assert status == 503 and body["error"] == "platform_unavailable"
    assert "/nonexistent/platform.yaml" in body["message"]
    status, _ = ext_call("GET", "api", "runs")
    assert status == 503

    async def jupyter_status() -> int:
        return (await jp_fetch("api", "status")).code

    assert jp_asyncio_loop.run_until_complete(jupyter_status()) == 200  # Jupyter itself keeps working


# -- helpers -------------------------------------------------------------------
def _direct(app, loop, method: str, path: str, body: Any) -> tuple[int, Any]:
    """The same request straight to the in-process platform, with its admin token."""

    async def go():
        response = await AsyncHTTPClient().fetch(
            f"{app.platform_url}/api/v1/{path}",
            method=method,
            body=json.dumps(body),
            headers={"Authorization": f"Bearer {app.token}", "Content-Type": "application/json"},
            raise_error=False,
        )
        return response.code, json.loads(response.body)

    return loop.run_until_complete(go())
