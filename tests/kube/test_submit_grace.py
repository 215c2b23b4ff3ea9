"""A run is recorded with its Job's name before the Job is created (one transaction per submit).
With several platform replicas on one database, another replica's reconcile pass can see such a run
before its Job exists: it must leave it pending for a grace period, and only a Job still missing
after that is "deleted outside the platform". Against the real control plane.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path

import pytest
from sqlalchemy import update

from kubebackend import namespace  # noqa: F401 (fixture)
from kubetest import PVC, kubeconfig
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend
from mlplatform_server.config import load_config
from mlplatform_server.services import runs as runs_module
from mlplatform_server.services.auth import Principal
from mlplatform_server.services.platform import Platform, PlatformSettings
from mlplatform_server.store import models as m
from mlplatform_server.store.db import Store, sqlite_url
from notebooks import realistic_notebook


@pytest.fixture
async def replica(namespace: str, tmp_path: Path):  # noqa: F811
    """One platform replica (its own backend and watches) on a shared database."""
    data = tmp_path / "data"
    data.mkdir()
    store = Store(sqlite_url(data))
    backend = KubernetesBackend(namespace, kubeconfig(), mf.ArtifactStore(pvc=PVC, root=data),
                                api_url="http://mlplatform.test:8000")
    settings = PlatformSettings(data_dir=data, db_url=store.url, api_url="http://mlplatform.test:8000",
                                admin_token="t")
    platform = Platform(settings, store, backend, load_config())
    yield platform
    await backend.close()
    store.close()


def record_pending_run(platform: Platform, created_at: dt.datetime) -> str:
    """What another replica's submit has recorded just before its Job create: a pending run with
    the Job's name."""
    platform.models.save(Principal("alice"), "iris", realistic_notebook(), "iris.ipynb")
    run_id = uuid.uuid4().hex[:16]
    with platform.store.session() as s:
        version = platform.models.resolve(s, Principal("alice"), "iris", None)
        s.add(m.Run(id=run_id, kind="train", status="pending", version=version, launched_by="alice",
                    backend="kubernetes", backend_ref=platform.backend.planned_ref(run_id, "alice"),
                    hardware=platform.config.hardware_size(None).to_json(),
                    environment=platform.config.environment(None).to_json(), created_at=created_at))
    return run_id


def state(platform: Platform, run_id: str) -> tuple[str, str | None]:
    run = platform.runs.get(Principal("alice"), run_id)
    return run["status"], run.get("reason")


async def test_a_run_whose_job_is_still_being_created_stays_pending(replica: Platform):
    now = dt.datetime.now(dt.timezone.utc)
    fresh = record_pending_run(replica, now)
    await replica.runs.reconcile_once()
    assert state(replica, fresh) == ("pending", None)

    # the same run, its Job still missing after the grace period: deleted outside the platform
    older = now - dt.timedelta(seconds=runs_module.SUBMIT_GRACE_SECONDS + 5)
    with replica.store.session() as s:
        s.execute(update(m.Run).where(m.Run.id == fresh).values(created_at=older))
    await replica.runs.reconcile_once()
    status, reason = state(replica, fresh)
    assert status == "failed" and "deleted outside the platform" in reason
