"""Scheduled batch prediction on Kubernetes: the CronJob of a schedule (a pure builder on top of
:func:`.manifests.make_cronjob`) and the firings read back from its Jobs.

Each firing is a Job the CronJob controller creates (named ``<cronjob>-<scheduled minute>``), or
one made by hand with ``kubectl create job --from=cronjob/NAME``. Its run id is the Job's name:
the platform records the run under that id when it sees the Job, and the pod learns the same id
from its ``batch.kubernetes.io/job-name`` label (downward API → ``MLP_RUN_ID``). Everything in the
template that differs per firing is written with ``$(MLP_RUN_ID)``, which the kubelet expands: the
run directory's mount (``subPathExpr``), and ``{run_id}`` in the outputs path. Run ids are at
most 32 characters (``runs.id``), hence the short CronJob name ``mlps-<schedule id>``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from ..scheduling import RUN_ID_PLACEHOLDER, Firing, ScheduleSpec
from . import manifests as mf
from .names import sanitize_name

SCHEDULE_ID_LABEL = "mlplatform.io/schedule-id"
RUN_ID_LABEL = "mlplatform.io/run-id"
RUN_ID_ENV = "MLP_RUN_ID"
RUN_ID_MAX = 32  # runs.id
_EXPANDED = f"$({RUN_ID_ENV})"


def schedule_cronjob_name(schedule_id: str) -> str:
    """``mlps-<id>``: with the controller's ``-<minutes>`` suffix a Job name stays a run id."""
    return sanitize_name(f"mlps-{schedule_id}", 20)


def _expand(value: str) -> str:
    """A value with the run id placeholder as the kubelet expands it (``$(`` elsewhere escaped)."""
    return value.replace("$(", "$$(").replace(RUN_ID_PLACEHOLDER, _EXPANDED)


def make_schedule_cronjob(
    spec: ScheduleSpec,
    *,
    namespace: str,
    artifacts: mf.ArtifactStore,
    secret_name: str | None,
    priority_class: str | None,
    api_url: str | None = None,
    history: int = 3,
) -> dict[str, Any]:
    """The CronJob of one schedule; ValueError when the template run cannot be expressed."""
    if spec.run.hardware.nodes > 1:
        raise ValueError(f"hardware size {spec.run.hardware.name!r} spans {spec.run.hardware.nodes} nodes; "
                         "a scheduled batch prediction runs on one")
    cron = mf.make_cronjob(
        spec.run,
        name=spec.name,
        schedule=spec.cron,
        namespace=namespace,
        image=None,
        artifacts=artifacts,
        secret_name=secret_name,
        priority_class=priority_class,
        time_zone=spec.timezone,
        history=history,
        starting_deadline_seconds=spec.starting_deadline_seconds,
        api_url=api_url,
    )
    cron["metadata"]["name"] = schedule_cronjob_name(spec.schedule_id)
    cron_spec = cron["spec"]
    cron_spec["suspend"] = bool(spec.suspended)
    job_template = cron_spec["jobTemplate"]
    pod_template = job_template["spec"]["template"]
    for meta in (cron["metadata"], job_template["metadata"], pod_template["metadata"]):
        labels = meta.setdefault("labels", {})
        labels.pop(RUN_ID_LABEL, None)  # it would name the template, not a firing
        labels[SCHEDULE_ID_LABEL] = spec.schedule_id
    for container in pod_template["spec"]["containers"]:
        env = [e for e in container.get("env", []) if e["name"] != RUN_ID_ENV]
        for entry in env:
            if RUN_ID_PLACEHOLDER in entry.get("value", ""):
                entry["value"] = _expand(entry["value"])
        # First, so that later values can refer to it as $(MLP_RUN_ID).
        run_id = {"name": RUN_ID_ENV,
                  "valueFrom": {"fieldRef": {"fieldPath": f"metadata.labels['{mf.JOB_NAME_LABEL}']"}}}
        container["env"] = [run_id, *env]
        for mount in container.get("volumeMounts", []):
            if RUN_ID_PLACEHOLDER in mount.get("subPath", ""):
                mount["subPathExpr"] = _expand(mount.pop("subPath"))
    leftover = json.dumps(cron)
    if RUN_ID_PLACEHOLDER in leftover:  # a field this builder does not know how to expand
        raise ValueError(f"the run id placeholder {RUN_ID_PLACEHOLDER} is left in the CronJob")
    return cron


def firing_of(job: dict[str, Any]) -> Firing | None:
    """The firing a Job is (None: not a schedule's Job)."""
    meta = job.get("metadata") or {}
    schedule_id = (meta.get("labels") or {}).get(SCHEDULE_ID_LABEL)
    if not schedule_id:
        return None
    created = meta.get("creationTimestamp")
    when = None
    if created:
        try:
            when = dt.datetime.fromisoformat(created.replace("Z", "+00:00"))
        except ValueError:
            when = None
    return Firing(schedule_id=schedule_id, ref=meta["name"], created_at=when)
