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


async def test_a_kube_api_server_that_never_answers_fails_the_run_within_the_deadline(tmp_path, monkeypatch):
    """A server that leads the background loop (maybe another one, docs/replicas.md) leaves a run
    whose Job is still being made alone for SUBMIT_GRACE_SECONDS, so a submit must give up before
    that: the run is failed with the reason, never left pending for the leader to misread. The API
    server here is a real socket that takes connections and never answers; the deadline is set
    short (configuration, not a stand-in)."""
    import socket
    import time

    from mlplatform_server.backends.kubernetes.backend import KubernetesBackend
    from mlplatform_server.config import load_config
    from mlplatform_server.services.platform import Platform, PlatformSettings
    from mlplatform_server.store.db import Store, sqlite_url

    silent = socket.create_server(("127.0.0.1", 0))  # listens; nothing ever reads or answers
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
        f"clusters: [{{name: k, cluster: {{server: 'http://127.0.0.1:{silent.getsockname()[1]}'}}}}]\n"
        "users: [{name: u, user: {token: t}}]\ncontexts: [{name: c, context: {cluster: k, user: u}}]\n")
    data = tmp_path / "data"
    data.mkdir()
    store = Store(sqlite_url(data))
    backend = KubernetesBackend("mlp-runs", str(kubeconfig), pvc="mlp-data", data_dir=data, watch=False)
    settings = PlatformSettings(data_dir=data, db_url=store.url, api_url="http://127.0.0.1:9", admin_token="t")
    platform = Platform(settings, store, backend, load_config())
    assert runs_module.SUBMIT_DEADLINE_SECONDS < runs_module.SUBMIT_GRACE_SECONDS  # as shipped
    monkeypatch.setattr(runs_module, "SUBMIT_DEADLINE_SECONDS", 1.0)
    try:
        platform.models.save(ALICE, "iris", realistic_notebook(), "iris.ipynb")
        began = time.monotonic()
        with pytest.raises(BackendError, match="did not answer within 1 s"):
            await platform.runs.submit(ALICE, RunRequest(model="iris"))
        # The create (1 s), then the delete of whatever it may have made (1 s): not the client's
        # own 30 s read timeout and 6 retries.
        assert time.monotonic() - began < 10
        run = only_run(platform)
        assert run["status"] == "failed"
        assert run["reason"] == "could not start on the kubernetes backend: the backend did not answer within 1 s"
    finally:
        await backend.close()
        store.close()
        silent.close()
