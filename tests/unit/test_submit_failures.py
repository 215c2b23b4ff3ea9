"""A submit that fails after its run is recorded leaves the run failed with a reason that says
whose fault it was, never pending (real SQLite store, process backend)."""

from __future__ import annotations

import pytest

from mlplatform_server.backends.process import ProcessBackend
from mlplatform_server.config import load_config
from mlplatform_server.errors import BackendError
from mlplatform_server.services import runs as runs_module
from mlplatform_server.services.auth import Principal
from mlplatform_server.services.platform import Platform, PlatformSettings
from mlplatform_server.services.runs import RunRequest
from mlplatform_server.store.db import Store, sqlite_url
from notebooks import realistic_notebook
from support import stop_stray_processes

ALICE = Principal("alice")


@pytest.fixture
def platform(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    store = Store(sqlite_url(data))
    settings = PlatformSettings(data_dir=data, db_url=store.url, api_url="http://127.0.0.1:9", admin_token="t")
    platform = Platform(settings, store, ProcessBackend(), load_config())
    platform.models.save(ALICE, "iris", realistic_notebook(), "iris.ipynb")
    yield platform
    stop_stray_processes(tmp_path)
    store.close()


def only_run(platform: Platform) -> dict:
    page = platform.runs.list(ALICE, None, 0).to_json()
    assert len(page["items"]) == 1
    return page["items"][0]


async def test_a_bug_preparing_the_spec_fails_the_run_without_blaming_the_backend(platform, monkeypatch):
    def broken_spec(run, token=None):
        raise KeyError("a bug")

    monkeypatch.setattr(platform.runs, "spec_for", broken_spec)  # fault injection: a bug of ours
    with pytest.raises(KeyError):  # the API answers 500 with an error id and logs the traceback
        await platform.runs.submit(ALICE, RunRequest(model="iris"))
    run = only_run(platform)
    assert run["status"] == "failed" and run["reason"] == runs_module.PREPARE_FAILED
    assert "backend:" not in run["reason"]


async def test_a_backend_that_refuses_fails_the_run_with_its_reason(platform, monkeypatch):
    async def refusing(spec):
        raise RuntimeError("no room on the node")

    monkeypatch.setattr(platform.backend, "submit", refusing)
    with pytest.raises(BackendError, match="no room on the node"):
        await platform.runs.submit(ALICE, RunRequest(model="iris"))
    run = only_run(platform)
    assert run["status"] == "failed"
    assert run["reason"] == "could not start on the process backend: no room on the node"
