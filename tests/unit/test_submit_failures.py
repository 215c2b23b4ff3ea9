"""A submit that fails after its run is recorded leaves the run failed with a reason that says
whose fault it was, never pending (conftest's platform: a real SQLite store, the process backend)."""

from __future__ import annotations

import pytest

from mlplatform_server.errors import BackendError
from mlplatform_server.services import runs as runs_module
from mlplatform_server.services.auth import Principal
from mlplatform_server.services.platform import Platform
from mlplatform_server.services.runs import RunRequest
from notebooks import realistic_notebook

ALICE = Principal("alice")


@pytest.fixture
def iris(platform: Platform) -> Platform:
    platform.models.save(ALICE, "iris", realistic_notebook(), "iris.ipynb")
    return platform


def only_run(platform: Platform) -> dict:
    page = platform.runs.list(ALICE, None, 0).to_json()
    assert len(page["items"]) == 1
    return page["items"][0]


async def test_a_bug_preparing_the_spec_fails_the_run_without_blaming_the_backend(iris, monkeypatch):
    def broken_spec(run, token=None):
        raise KeyError("a bug")

    monkeypatch.setattr(iris.runs, "spec_for", broken_spec)  # fault injection: a bug of ours
    with pytest.raises(KeyError):  # the API answers 500 with an error id and logs the traceback
        await iris.runs.submit(ALICE, RunRequest(model="iris"))
    run = only_run(iris)
    assert run["status"] == "failed" and run["reason"] == runs_module.PREPARE_FAILED
    assert "backend:" not in run["reason"]


async def test_a_backend_that_refuses_fails_the_run_with_its_reason(iris):
    # A file where the process backend makes its runs' folders: its submit fails (a real OSError).
    iris.runs.run_dir("x").parent.write_text("in the way")
    with pytest.raises(BackendError, match="Not a directory"):
        await iris.runs.submit(ALICE, RunRequest(model="iris"))
    run = only_run(iris)
    assert run["status"] == "failed"
    assert run["reason"].startswith("could not start on the process backend: ") and "Not a directory" in run["reason"]
