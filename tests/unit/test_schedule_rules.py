"""Scheduled batch prediction: cron and time-zone validation, output patterns, the firing rule with a
fixed clock, the platform's own scheduler on a real store (a restart neither loses nor duplicates a
firing), the schedule's CronJob builder, and migration 0004 against the ORM."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import select, update

from mlplatform_server.backends.base import Hardware, RunSpec
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.schedules import firing_of, make_schedule_cronjob, schedule_cronjob_name
from mlplatform_server.backends.process import ProcessBackend
from mlplatform_server.backends.scheduling import RUN_ID_PLACEHOLDER, ScheduleSpec
from mlplatform_server.errors import InvalidInput, NotFound
from mlplatform_server.services import cron
from mlplatform_server.services.auth import Principal
from mlplatform_server.services.platform import Platform
from mlplatform_server.services.schedules import ScheduleRequest
from mlplatform_server.store import models as m
from mlplatform_server.store.db import Store
from notebooks import realistic_notebook

UTC = dt.timezone.utc


def at(text_: str) -> dt.datetime:
    return dt.datetime.fromisoformat(text_).replace(tzinfo=UTC)


# -- cron expressions and time zones ------------------------------------------------------------

@pytest.mark.parametrize("expr", ["* * * * *", "0 3 * * *", "*/15 9-17 * * MON-FRI", "0 0 1 JAN,JUL ?",
                                  "5,35 * * * 0", "@daily", "@hourly", "@Weekly", "  0   3 * * *  "])
def test_valid_cron_expressions(expr):
    assert cron.validate_cron(expr) == (" ".join(expr.split()).lower() if expr.strip().startswith("@")
                                        else " ".join(expr.split()))


@pytest.mark.parametrize("expr, why", [
    ("", "a cron expression is required"),
    ("* * * *", "it has 4 fields"),
    ("0 * * * * *", "it has 6 fields"),  # seconds: not a CronJob schedule
    ("60 * * * *", "out of range"),
    ("0 24 * * *", "out of range"),
    ("0 0 L * *", "the day-of-month field 'L' has 'L'"),
    ("0 0 * * 1#2", "the day-of-week field '1#2' has '1#2'"),
    ("H * * * *", "the minute field 'H' has 'H'"),
    ("0 0 * MON *", "the month field 'MON' has 'MON'"),
    ("TZ=UTC 0 0 * * *", "give 'timezone' instead"),
    ("@often", "unknown macro '@often'"),
    ("0 0 31 2 *", "it never matches a date"),
])
def test_invalid_cron_expressions_name_the_field(expr, why):
    with pytest.raises(InvalidInput) as info:
        cron.validate_cron(expr)
    assert info.value.message.startswith("schedule: ")
    assert why in info.value.message and "expected 5 fields" in info.value.message
    assert info.value.details == {"field": "schedule"}


def test_time_zones():
    assert cron.validate_timezone(None) is None and cron.validate_timezone("") is None
    assert cron.validate_timezone("Europe/Paris") == "Europe/Paris"
    with pytest.raises(InvalidInput, match=r"^timezone: unknown time zone 'Europe/Nowhere'"):
        cron.validate_timezone("Europe/Nowhere")
    with pytest.raises(InvalidInput, match="^timezone: "):
        cron.validate_timezone(3)
    # longer than a file name: once an OSError from zoneinfo (a 500), shown shortened
    with pytest.raises(InvalidInput, match=r"^timezone: unknown time zone 'aaaa+\.\.\.' \(expected"):
        cron.validate_timezone("a" * 5000)


def test_next_fire_in_a_time_zone_and_across_daylight_saving():
    assert cron.next_fire("0 3 * * *", at("2026-11-27T10:05:30")) == at("2026-11-28T03:00:00")
    assert cron.next_fire("0 3 * * *", at("2026-11-27T10:05:30"), "Europe/Paris") == at("2026-11-28T02:00:00")
    # 2026-03-29 02:30 does not exist in Paris (clocks jump from 02:00 to 03:00)
    assert cron.next_fire("0 12 * * *", at("2026-03-28T12:00:00"), "Europe/Paris") == at("2026-03-29T10:00:00")
    assert cron.next_fire("@hourly", at("2026-11-27T10:00:00")) == at("2026-11-27T11:00:00")
    assert cron.latest_fire("* * * * *", at("2026-11-27T10:05:30")) == at("2026-11-27T10:05:00")
    assert cron.latest_fire("* * * * *", at("2026-11-27T10:05:00")) == at("2026-11-27T10:05:00")


# -- the firing rule, with a fixed clock ----------------------------------------------------------

def test_plan_nothing_due_yet():
    assert cron.plan("0 * * * *", None, at("2026-11-27T11:00:00"), at("2026-11-27T10:59:59"), 300) is None


def test_plan_fires_on_time_and_sets_the_next_due_time():
    step = cron.plan("0 * * * *", None, at("2026-11-27T11:00:00"), at("2026-11-27T11:00:00.4"), 300)
    assert step == cron.Plan(at("2026-11-27T11:00:00"), at("2026-11-27T12:00:00"), 0)


def test_plan_after_downtime_fires_once_for_the_latest_missed_time():
    # down from 07:30 to 10:03: 08:00, 09:00 and 10:00 were missed; only 10:00 (3 min late) runs
    step = cron.plan("0 * * * *", None, at("2026-11-27T08:00:00"), at("2026-11-27T10:03:00"), 300)
    assert step == cron.Plan(at("2026-11-27T10:00:00"), at("2026-11-27T11:00:00"), 2)


def test_plan_too_late_skips_every_missed_time():
    step = cron.plan("0 * * * *", None, at("2026-11-27T08:00:00"), at("2026-11-27T10:06:00"), 300)
    assert step == cron.Plan(None, at("2026-11-27T11:00:00"), 3)


def test_plan_in_a_time_zone():
    step = cron.plan("30 2 * * *", "Europe/Paris", at("2026-11-27T01:30:00"), at("2026-11-27T01:31:00"), 300)
    assert step == cron.Plan(at("2026-11-27T01:30:00"), at("2026-11-28T01:30:00"), 0)


# -- outputs patterns ---------------------------------------------------------------------------

def test_outputs_pattern_needs_run_id_and_knows_its_placeholders():
    assert cron.check_outputs_pattern("/d/{date}/{run_id}.jsonl") == "/d/{date}/{run_id}.jsonl"
    for pattern, message in [("/d/out.jsonl", "has no {run_id}"), ("/d/{date}.jsonl", "has no {run_id}"),
                             ("/d/{run_id}-{hour}.jsonl", "unknown placeholder(s) {hour}"),
                             ("", "a path pattern is required")]:
        with pytest.raises(InvalidInput, match=r"^outputs: ") as info:
            cron.check_outputs_pattern(pattern)
        assert message in info.value.message and info.value.details == {"field": "outputs"}
    with pytest.raises(InvalidInput, match=r"\{date\} is not available on the kubernetes backend"):
        cron.check_outputs_pattern("/d/{date}/{run_id}.jsonl", allow_date=False)


def test_expand_outputs_uses_the_firing_date_in_the_schedules_time_zone():
    when = at("2026-11-27T23:30:00")
    assert cron.expand_outputs("/d/{date}/{run_id}.jsonl", "ab12", when) == "/d/2026-11-27/ab12.jsonl"
    assert cron.expand_outputs("/d/{date}/{run_id}.jsonl", "ab12", when, "Europe/Paris") == "/d/2026-11-28/ab12.jsonl"


# -- the platform's own scheduler on a real store (process backend: conftest's platform), with a fixed clock

def _trained_run(platform: Platform, owner: str = "alice") -> str:
    """A succeeded training run, recorded as the platform records one."""
    platform.models.save(Principal(owner), "iris", realistic_notebook(), "iris.ipynb")
    run_id = uuid.uuid4().hex[:16]
    with platform.store.session() as s:
        version = platform.models.resolve(s, Principal(owner), "iris", None)
        s.add(m.Run(id=run_id, kind="train", status="succeeded", version=version, launched_by=owner,
                    backend="process", hardware=platform.config.hardware_size(None).to_json(),
                    environment=platform.config.environment(None).to_json()))
    (platform.runs.run_dir(run_id) / "artifacts").mkdir(parents=True)
    return run_id


async def _create(platform: Platform, tmp_path: Path, expr: str = "0 * * * *", **kw) -> dict:
    source = _trained_run(platform)
    inputs = tmp_path / "in.jsonl"
    inputs.write_text(json.dumps({"sepal_length": 5.1}) + "\n")
    req = ScheduleRequest(name="hourly", model="iris", source_run_id=source, inputs=str(inputs),
                          outputs=str(tmp_path / "out" / "{date}" / "{run_id}.jsonl"), schedule=expr, **kw)
    return await platform.schedules.create(Principal("alice"), req)


def _fired(platform: Platform, schedule_id: str) -> list[m.Run]:
    with platform.store.session() as s:
        return list(s.execute(select(m.Run).where(m.Run.schedule_id == schedule_id)
                              .order_by(m.Run.created_at)).scalars())


def _set(platform: Platform, schedule_id: str, **values) -> None:
    with platform.store.session() as s:
        s.execute(update(m.Schedule).where(m.Schedule.id == schedule_id).values(**values))


async def test_scheduler_fires_once_per_due_time_and_a_restart_neither_loses_nor_duplicates(platform, tmp_path):
    created = await _create(platform, tmp_path)
    sid = created["id"]
    due = at("2026-11-27T10:00:00")
    _set(platform, sid, next_fire_at=at("2026-11-27T08:00:00"))  # as if it was made at 07:30

    await platform.schedules.fire_due(at("2026-11-27T07:59:59"))
    assert _fired(platform, sid) == []

    # down from 07:30 to 10:02: one firing, for 10:00, with the date and its run id in the outputs
    await platform.schedules.fire_due(at("2026-11-27T10:02:00"))
    [run] = _fired(platform, sid)
    assert run.kind == "batch-predict" and run.launched_by == "alice" and run.backend_ref
    assert run.outputs == str(tmp_path / "out" / "2026-11-27" / f"{run.id}.jsonl")
    shown = platform.schedules.get(Principal("alice"), "hourly")
    assert shown["last_run_id"] == run.id and shown["last_fired_at"] == due.isoformat()
    assert [r["id"] for r in shown["runs"]] == [run.id] and shown["runs"][0]["schedule"] == "hourly"
    with platform.store.session() as s:
        sc = s.get(m.Schedule, sid)
        assert sc.next_fire_at == at("2026-11-27T11:00:00") and sc.firing_run_id is None

    # the same pass again, and a restarted platform (a new scheduler on the same store): no duplicate
    await platform.schedules.fire_due(at("2026-11-27T10:02:30"))
    restarted = Platform(platform.settings, platform.store, ProcessBackend(), platform.config)
    await restarted.schedules.fire_due(at("2026-11-27T10:03:00"))
    assert len(_fired(platform, sid)) == 1

    # a crash right after claiming 11:00 (the claim is stored, no run yet): the restart submits it once
    _set(platform, sid, next_fire_at=at("2026-11-27T12:00:00"), firing_run_id="feedc0de00000001",
         firing_at=at("2026-11-27T11:00:00"))
    with platform.store.session() as s:  # the first firing has ended
        s.execute(update(m.Run).where(m.Run.id == run.id).values(status="failed"))
    await restarted.schedules.fire_due(at("2026-11-27T11:01:00"))
    await restarted.schedules.fire_due(at("2026-11-27T11:01:01"))
    assert [r.id for r in _fired(platform, sid)] == [run.id, "feedc0de00000001"]
    with platform.store.session() as s:
        assert s.get(m.Schedule, sid).firing_run_id is None


async def test_scheduler_skips_late_and_overlapping_firings_and_suspended_schedules(platform, tmp_path):
    created = await _create(platform, tmp_path)
    sid = created["id"]
    # more than the starting deadline (300 s) late: skipped, and said so
    _set(platform, sid, next_fire_at=at("2026-11-27T08:00:00"))
    await platform.schedules.fire_due(at("2026-11-27T10:06:00"))
    assert _fired(platform, sid) == []
    shown = platform.schedules.get(Principal("alice"), "hourly")
    assert "missed 3 firing(s)" in shown["last_error"]

    # suspended: nothing fires; resumed: the latest missed time fires if within the deadline
    await platform.schedules.set_suspended(Principal("alice"), "hourly", True)
    await platform.schedules.fire_due(at("2026-11-27T11:00:10"))
    assert _fired(platform, sid) == []
    await platform.schedules.set_suspended(Principal("alice"), "hourly", False)
    await platform.schedules.fire_due(at("2026-11-27T11:00:20"))
    [first] = _fired(platform, sid)

    # concurrency policy Forbid: the 12:00 firing is skipped while the 11:00 one is still running
    with platform.store.session() as s:
        s.execute(update(m.Run).where(m.Run.id == first.id).values(status="running"))
    await platform.schedules.fire_due(at("2026-11-27T12:00:01"))
    assert [r.id for r in _fired(platform, sid)] == [first.id]
    assert "is still running (concurrency policy Forbid)" in platform.schedules.get(
        Principal("alice"), "hourly")["last_error"]


async def test_a_firing_that_cannot_start_is_reported_on_the_schedule(platform, tmp_path):
    created = await _create(platform, tmp_path)
    (tmp_path / "in.jsonl").unlink()
    _set(platform, created["id"], next_fire_at=at("2026-11-27T10:00:00"))
    await platform.schedules.fire_due(at("2026-11-27T10:00:01"))
    assert _fired(platform, created["id"]) == []
    error = platform.schedules.get(Principal("alice"), "hourly")["last_error"]
    assert error.startswith("the firing due 2026-11-27T10:00:00+00:00 could not start: Input path")


async def test_schedules_are_per_user(platform, tmp_path):
    await _create(platform, tmp_path)
    with pytest.raises(NotFound, match="No schedule named 'hourly'"):
        platform.schedules.get(Principal("bob"), "hourly")
    with pytest.raises(NotFound, match="No schedule named 'hourly'"):
        await platform.schedules.set_suspended(Principal("bob"), "hourly", True)
    with pytest.raises(NotFound):
        await platform.schedules.delete(Principal("bob"), "hourly")
    assert platform.schedules.list(Principal("bob"), None, 0).total == 0
    assert platform.schedules.list(Principal("root", admin=True), None, 0).total == 1
    assert platform.schedules.get(Principal("root", admin=True), "hourly")["owner"] == "alice"


# -- the CronJob of a schedule (pure builder) -----------------------------------------------------

DATA = Path("/srv/mlp")
PVC = mf.ArtifactStore(pvc="mlp-data", root=DATA)


def schedule_spec(outputs: str = "/srv/mlp/predictions/{run_id}.jsonl", **kw) -> ScheduleSpec:
    run_dir = DATA / "runs" / RUN_ID_PLACEHOLDER
    module = DATA / "models" / "iris" / "1" / "model.py"
    artifacts = DATA / "runs" / "abc123" / "artifacts"
    run = RunSpec(
        run_id=RUN_ID_PLACEHOLDER, action="batch-predict", user="alice", model="iris", version="1",
        module_path=module, run_dir=run_dir, hyperparameters={"C": 1.0},
        hardware=kw.pop("hardware", Hardware(name="cpu-small", cpu=0.5, memory="2Gi")),
        image="localhost/mlplatform/python:latest",
        env={"MLP_RUN_ID": RUN_ID_PLACEHOLDER, "MLP_URL": "http://platform", "MLP_MODULE_PATH": str(module),
             "MLP_HYPERPARAMETERS": '{"C": 1.0}', "MLP_ARTIFACTS": str(artifacts),
             "MLP_RESULT_PATH": str(run_dir / "result.json"), "MLP_INPUTS": "/srv/mlp/inputs/rows.jsonl",
             "MLP_OUTPUTS": outputs},
        inputs=Path("/srv/mlp/inputs/rows.jsonl"), outputs=Path(outputs), source_artifacts=artifacts)
    values = dict(schedule_id="0123456789ab", name="Nightly Iris", cron="0 3 * * *", timezone="Europe/Paris",
                  suspended=False, starting_deadline_seconds=600, run=run)
    values.update(kw)
    return ScheduleSpec(**values)


def build(spec: ScheduleSpec, artifacts: mf.ArtifactStore = PVC) -> dict:
    return make_schedule_cronjob(spec, namespace="ml", artifacts=artifacts, secret_name="mlp-cred-alice",
                                 priority_class=None, api_url="http://mlp.ml.svc")


def container_of(cronjob: dict) -> dict:
    return cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]


def test_schedule_cronjob_runs_each_firing_under_its_jobs_name():
    cronjob = build(schedule_spec())
    assert cronjob["metadata"]["name"] == "mlps-0123456789ab" == schedule_cronjob_name("0123456789ab")
    # the controller appends "-<minutes since the epoch>" (8 digits): the Job name fits runs.id
    assert len(cronjob["metadata"]["name"]) + 1 + 8 <= 32
    spec = cronjob["spec"]
    assert {k: spec[k] for k in ("schedule", "timeZone", "suspend", "concurrencyPolicy", "startingDeadlineSeconds",
                                 "successfulJobsHistoryLimit", "failedJobsHistoryLimit")} == {
        "schedule": "0 3 * * *", "timeZone": "Europe/Paris", "suspend": False, "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 600, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3}
    for meta in (cronjob["metadata"], spec["jobTemplate"]["metadata"], spec["jobTemplate"]["spec"]["template"]["metadata"]):
        assert meta["labels"]["mlplatform.io/schedule-id"] == "0123456789ab"
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "mlplatform"
        assert "mlplatform.io/run-id" not in meta["labels"]
    container = container_of(cronjob)
    assert container["env"][0] == {"name": "MLP_RUN_ID", "valueFrom": {"fieldRef": {
        "fieldPath": "metadata.labels['batch.kubernetes.io/job-name']"}}}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLP_OUTPUTS"] == "/mlp/output/$(MLP_RUN_ID).jsonl"
    assert env["MLP_RESULT_PATH"] == "/mlp/run/result.json" and env["MLP_ARTIFACTS"] == "/mlp/artifacts"
    mounts = {mt["mountPath"]: mt for mt in container["volumeMounts"]}
    assert mounts["/mlp/run"] == {"name": "data", "mountPath": "/mlp/run", "subPathExpr": "runs/$(MLP_RUN_ID)"}
    assert mounts["/mlp/output"] == {"name": "data", "mountPath": "/mlp/output", "subPath": "predictions"}
    assert mounts["/mlp/artifacts"]["subPath"] == "runs/abc123/artifacts" and mounts["/mlp/artifacts"]["readOnly"]
    pod = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["automountServiceAccountToken"] is False and pod["securityContext"]["runAsNonRoot"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert RUN_ID_PLACEHOLDER not in json.dumps(cronjob)


def test_schedule_cronjob_with_the_run_id_in_a_folder_suspended_and_on_object_storage():
    cronjob = build(schedule_spec("/srv/mlp/predictions/{run_id}/out.jsonl", suspended=True, timezone=None))
    assert cronjob["spec"]["suspend"] is True and "timeZone" not in cronjob["spec"]
    mounts = {mt["mountPath"]: mt for mt in container_of(cronjob)["volumeMounts"]}
    assert mounts["/mlp/output"] == {"name": "data", "mountPath": "/mlp/output",
                                     "subPathExpr": "predictions/$(MLP_RUN_ID)"}
    s3 = build(schedule_spec(), mf.ArtifactStore(uri="s3://bucket/mlp"))
    env = {e["name"]: e.get("value") for e in container_of(s3)["env"]}
    assert env["MLP_ARTIFACTS_URI"] == "s3://bucket/mlp/runs/$(MLP_RUN_ID)"
    assert RUN_ID_PLACEHOLDER not in json.dumps(s3)


def test_schedule_cronjob_escapes_dollar_references_in_paths_and_refuses_multi_node_sizes():
    cronjob = build(schedule_spec("/srv/mlp/p$(HOME)/{run_id}.jsonl"))
    env = {e["name"]: e.get("value") for e in container_of(cronjob)["env"]}
    assert env["MLP_OUTPUTS"] == "/mlp/output/$(MLP_RUN_ID).jsonl"
    mounts = {mt["mountPath"]: mt for mt in container_of(cronjob)["volumeMounts"]}
    assert mounts["/mlp/output"]["subPath"] == "p$(HOME)"  # subPath is never expanded
    with pytest.raises(ValueError, match="spans 2 nodes"):
        build(schedule_spec(hardware=Hardware(name="multi", cpu=1, memory="1Gi", nodes=2)))


def test_firing_of_a_job():
    job = {"metadata": {"name": "mlps-0123456789ab-29412345", "creationTimestamp": "2026-11-27T03:00:04Z",
                        "labels": {"mlplatform.io/schedule-id": "0123456789ab"}}}
    firing = firing_of(job)
    assert firing.schedule_id == "0123456789ab" and firing.ref == "mlps-0123456789ab-29412345"
    assert firing.created_at == at("2026-11-27T03:00:04")
    assert firing_of({"metadata": {"name": "mlp-run-x", "labels": {}}}) is None


# -- migration 0004 matches the ORM, on SQLite and PostgreSQL ------------------------------------

def test_migration_0004_matches_the_schedule_tables(database_url):
    store = Store(database_url)
    try:
        with store.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), m.Base.metadata)
        mine = [d for d in diff if "schedule" in repr(d)]
        assert mine == []
    finally:
        store.close()
