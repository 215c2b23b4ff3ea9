"""``POST mlplatform/invoke/<deployment>``: the Lab's "try it" box, through a real Jupyter server
with the in-process platform on the process backend (a real serving process answers)."""

from __future__ import annotations

import asyncio
import time
import pytest

from test_extension import (  # noqa: F401  (fixtures)
    ext_call,
    ext_data_dir,
    ext_notebook,
    ext_options,
    ext_platform_url,
    ext_wait_run,
    jp_server_config,
)

pytest_plugins = ["pytest_jupyter.jupyter_server"]


@pytest.fixture
def deployed(ext_call, ext_notebook, ext_wait_run, jp_asyncio_loop):
    """A trained `tiny` model (C=0.5) deployed as `tiny-api`, ready; undeployed afterwards."""
    assert ext_call("POST", "models", body={"path": ext_notebook(), "name": "tiny"})[0] == 201
    status, run = ext_call("POST", "api", "runs", body={"model": "tiny", "hyperparameters": {"C": 0.5}})
    assert status == 201, run
    assert ext_wait_run(run["id"])["status"] == "succeeded"
    status, dep = ext_call("POST", "api", "deployments", body={"model": "tiny", "run_id": run["id"], "name": "tiny-api"})
    assert status == 201, dep
    deadline = time.time() + 90
    while dep["status"] != "ready":
        assert dep["status"] in ("deploying", "pending"), dep
        assert time.time() < deadline, f"deployment not ready in 90 s: {dep}"
        jp_asyncio_loop.run_until_complete(asyncio.sleep(0.3))
        dep = ext_call("GET", "api", "deployments", "tiny-api")[1]
    yield dep
    ext_call("DELETE", "api", "deployments", "tiny-api")


def test_invoke_posts_to_the_deployment(ext_call, deployed):
    status, answer = ext_call("POST", "invoke", "tiny-api", body={"x": 1})
    assert status == 200, answer
    assert answer == {"label": 1, "C": 0.5}


def test_invoke_refuses_bad_json(ext_call, deployed):
    status, body = ext_call("POST", "invoke", "tiny-api", raw=b"{not json")
    assert status == 400 and body["error"] == "invalid_input"
    assert "not valid JSON" in body["message"]


def test_invoke_unknown_deployment_is_the_platforms_404(ext_call):
    status, body = ext_call("POST", "invoke", "nope", body={"x": 1})
    assert status == 404, body
    assert "nope" in body["message"]


def test_invoke_needs_jupyter_authentication(ext_call):
    for headers in ({"Authorization": ""}, {"Authorization": "token wrong"}):
        status, answer = ext_call("POST", "invoke", "x", body={}, headers=headers)
        assert status in (401, 403), (headers, status, answer)
