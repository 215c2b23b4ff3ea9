"""What a backend that fires schedules itself (Kubernetes CronJobs) is given and reports back.

Backends with ``fires_schedules = False`` (process, docker) never see these: the platform's own
scheduler (services/schedules.py) submits an ordinary batch-prediction run at each due time.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from .base import RunSpec

#: The run id in a schedule's template run (paths, environment): the backend replaces it with
#: each firing's own run id, which is its own reference of the firing (e.g. the Job's name).
RUN_ID_PLACEHOLDER = "{run_id}"


@dataclass(frozen=True)
class ScheduleSpec:
    """One schedule. ``run`` is the template run: its ``run_id`` is :data:`RUN_ID_PLACEHOLDER`,
    and so are the parts of ``run_dir``, ``outputs`` and ``env`` that differ per firing."""

    schedule_id: str
    name: str
    cron: str
    timezone: str | None
    suspended: bool
    starting_deadline_seconds: int
    run: RunSpec


@dataclass(frozen=True)
class Firing:
    """A run the backend started for a schedule. ``ref`` is both the run's backend reference and
    its run id (what the workload itself uses as ``MLP_RUN_ID`` and its run directory);
    ``backend_ref``, when set, is the backend reference instead (e.g. ``namespace/name``)."""

    schedule_id: str
    ref: str
    created_at: dt.datetime | None = None
    backend_ref: str | None = None
