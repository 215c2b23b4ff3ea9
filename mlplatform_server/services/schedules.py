"""Scheduled batch prediction: a model version's ``batch_predict`` run on a cron schedule.

Every firing is an ordinary, recorded batch-prediction run carrying ``schedule_id``. Who fires:

- Kubernetes (``backend.fires_schedules``): a CronJob. The platform records a run for each Job
  the CronJob controller creates (its run id is the Job's name, see backends/kubernetes/schedules.py)
  and then tracks it like any run.
- process and docker: this module's scheduler, called from the platform's reconcile loop. The next
  due time is stored with the schedule; a firing is first *claimed* (the next due time and the new
  run's id written in one conditional UPDATE), then submitted under that id, so a server restart
  neither loses a claimed firing (it is submitted on start) nor duplicates one (the run id is a
  primary key). Missed firings follow services/cron.py's rule: at most the most recent one starts,
  if it is less than ``starting_deadline_seconds`` late. As with the CronJob's
  ``concurrencyPolicy: Forbid``, a firing due while the previous one still runs is skipped.

Names are unique across the platform (like deployment names). Users see and touch only their own
schedules; admins all. A firing runs as the schedule's owner.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, or_, select, update
from sqlalchemy.exc import IntegrityError

from .. import contract
from ..backends.base import Backend, RunState
from ..backends.scheduling import RUN_ID_PLACEHOLDER, Firing, ScheduleSpec
from ..config import PlatformConfig
from ..errors import BackendError, Conflict, InvalidInput, PlatformError
from ..store import models as m
from ..store.db import Store
from . import cron
from .auth import Principal, owned_by_name
from .models import MODEL_NAME, ModelService, stored_contract
from .paging import Page, check_fields, paginate
from .runs import ACTIVE, RunRequest, RunService, _digest_of, run_to_json

log = logging.getLogger("mlplatform.schedules")

RECENT_RUNS = 10
DEFAULT_DEADLINE = 300  # seconds, as make_cronjob's startingDeadlineSeconds
MAX_DEADLINE = 7 * 24 * 3600
RUN_ID_MAX = 32  # runs.id


@dataclass(frozen=True)
class ScheduleRequest:
    name: str
    model: str
    source_run_id: str
    inputs: str
    outputs: str
    schedule: str
    version: str | None = None
    hardware: str | None = None
    environment: str | None = None
    timezone: str | None = None
    starting_deadline_seconds: int = DEFAULT_DEADLINE
    suspended: bool = False

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "ScheduleRequest":
        check_fields(body, set(cls.__dataclass_fields__))
        for key in ("name", "model", "source_run_id", "inputs", "outputs", "schedule"):
            if not isinstance(body.get(key), str) or not body[key].strip():
                raise InvalidInput(f"{key}: required (a non-empty string)", field=key)
        for key in ("version", "hardware", "environment", "timezone"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise InvalidInput(f"{key}: expected a string, got {body[key]!r}", field=key)
        deadline = body.get("starting_deadline_seconds")
        if deadline is None:
            deadline = DEFAULT_DEADLINE
        if isinstance(deadline, bool) or not isinstance(deadline, int) or not 10 <= deadline <= MAX_DEADLINE:
            raise InvalidInput(f"starting_deadline_seconds: expected an integer from 10 to {MAX_DEADLINE}, "
                               f"got {deadline!r}", field="starting_deadline_seconds")
        suspended = body.get("suspended", False)
        if not isinstance(suspended, bool):
            raise InvalidInput(f"suspended: expected true or false, got {suspended!r}", field="suspended")
        return cls(**{**body, "starting_deadline_seconds": deadline, "suspended": suspended})


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class ScheduleService:
    def __init__(self, store: Store, backend: Backend, config: PlatformConfig, models: ModelService,
                 runs: RunService) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.models = models
        self.runs = runs
        self._skipped_firings: set[str] = set()  # Jobs that cannot be recorded (warned once)

    # -- JSON ----------------------------------------------------------------
    def to_json(self, sc: m.Schedule, now: dt.datetime | None = None) -> dict[str, Any]:
        return {
            "id": sc.id,
            "name": sc.name,
            "owner": sc.owner,
            "model": sc.version.model.name,
            "version": sc.version.version,
            "source_run_id": sc.source_run_id,
            "inputs": sc.inputs,
            "outputs": sc.outputs,
            "schedule": sc.cron,
            "timezone": sc.timezone,
            "starting_deadline_seconds": sc.starting_deadline_seconds,
            "hardware": sc.hardware,
            "environment": sc.environment,
            "suspended": sc.suspended,
            "backend": sc.backend,
            "backend_ref": sc.backend_ref,
            "next_fire_at": m.iso(self._next_fire(sc, now or _now())),
            "last_fired_at": m.iso(sc.last_fired_at),
            "last_run_id": sc.last_run_id,
            "last_error": sc.last_error,
            "created_at": m.iso(sc.created_at),
            "updated_at": m.iso(sc.updated_at),
        }

    def _next_fire(self, sc: m.Schedule, now: dt.datetime) -> dt.datetime | None:
        if sc.suspended:
            return None
        if sc.next_fire_at is not None and sc.next_fire_at > now:
            return sc.next_fire_at
        return cron.next_fire(sc.cron, now, sc.timezone)  # the CronJob's (or a due one about to fire)

    # -- create --------------------------------------------------------------
    async def create(self, caller: Principal, req: ScheduleRequest) -> dict[str, Any]:
        caller.require_user()
        if not MODEL_NAME.match(req.name):
            raise InvalidInput(f"name: invalid schedule name {req.name!r}: expected lowercase letters, digits and "
                               "'-', at most 63 characters, starting and ending with a letter or digit", field="name")
        expr = cron.validate_cron(req.schedule)
        timezone = cron.validate_timezone(req.timezone)
        outputs = cron.check_outputs_pattern(req.outputs, allow_date=not self.backend.fires_schedules)
        for key, path in (("inputs", req.inputs), ("outputs", outputs)):
            if not os.path.isabs(path):
                raise InvalidInput(f"{key}: expected an absolute path on the platform host, got {path!r}", field=key)
        env_cfg = self.config.environment(req.environment)
        size = self.config.hardware_size(req.hardware)
        if size.nodes > 1:
            raise InvalidInput(f"hardware: size {size.name!r} spans {size.nodes} nodes; a scheduled batch "
                               "prediction runs on one", field="hardware")
        schedule_id = uuid.uuid4().hex[:12]
        now = _now()
        try:
            with self.store.session() as s:
                if s.execute(select(m.Schedule.id).where(m.Schedule.name == req.name)).first() is not None:
                    raise Conflict(f"A schedule named {req.name!r} already exists; delete it or choose another name")
                version = self.models.resolve(s, caller, req.model, req.version)
                info = stored_contract(version.module_source)
                contract.require_method(info, "batch-predict")
                hyperparameters = contract.coerce_hyperparameters(info.schema(), {})
                probe = RunRequest(model=req.model, kind="batch-predict", source_run_id=req.source_run_id,
                                   inputs=req.inputs, outputs=outputs)
                source = self.runs.batch_source(s, caller, probe, version)
                sc = m.Schedule(
                    id=schedule_id,
                    name=req.name,
                    owner=caller.name,
                    version=version,
                    source_run_id=source.id,
                    inputs=req.inputs,
                    outputs=outputs,
                    cron=expr,
                    timezone=timezone,
                    starting_deadline_seconds=req.starting_deadline_seconds,
                    hyperparameters=hyperparameters,
                    hardware=size.to_json(),
                    environment=env_cfg.to_json(),
                    image=version.image or env_cfg.image,
                    suspended=req.suspended,
                    backend=self.backend.name,
                    next_fire_at=None if self.backend.fires_schedules else cron.next_fire(expr, now, timezone),
                )
                s.add(sc)
                s.flush()
                self.models.ensure_module_file(version)
                spec = self._spec(sc) if self.backend.fires_schedules else None
        except IntegrityError:
            raise Conflict(f"A schedule named {req.name!r} already exists; delete it or choose another name") from None
        if spec is not None:
            try:
                ref = await self.backend.create_schedule(spec)
            except Exception as exc:  # nothing half-written: the schedule is not kept
                self._remove(schedule_id)
                if isinstance(exc, PlatformError):
                    raise
                raise BackendError(f"Schedule {req.name!r} could not be created on the {self.backend.name} "
                                   f"backend: {exc}") from None
            with self.store.session() as s:
                s.execute(update(m.Schedule).where(m.Schedule.id == schedule_id).values(backend_ref=ref))
        return self.get(caller, req.name)

    def _spec(self, sc: m.Schedule) -> ScheduleSpec:
        """The backend's view of a schedule: its template run has the run id placeholder."""
        template = m.Run(  # transient: never added to the session
            id=RUN_ID_PLACEHOLDER,
            kind="batch-predict",
            status=RunState.PENDING.value,
            version=sc.version,
            hyperparameters=sc.hyperparameters,
            hardware=sc.hardware,
            environment=sc.environment,
            image=sc.image,
            launched_by=sc.owner,
            backend=sc.backend,
            source_run_id=sc.source_run_id,
            inputs=sc.inputs,
            outputs=sc.outputs,
        )
        return ScheduleSpec(schedule_id=sc.id, name=sc.name, cron=sc.cron, timezone=sc.timezone,
                            suspended=sc.suspended, starting_deadline_seconds=sc.starting_deadline_seconds,
                            run=self.runs.spec_for(template))

    def _remove(self, schedule_id: str) -> None:
        with self.store.session() as s:
            sc = s.get(m.Schedule, schedule_id)
            if sc is not None:
                s.delete(sc)

    # -- queries -------------------------------------------------------------
    def _find(self, s, caller: Principal, name: str) -> m.Schedule:
        return owned_by_name(s, caller, m.Schedule, name, "schedule")

    def get(self, caller: Principal, name: str) -> dict[str, Any]:
        with self.store.session() as s:
            sc = self._find(s, caller, name)
            data = self.to_json(sc)
            runs = s.execute(
                select(m.Run).where(m.Run.schedule_id == sc.id).order_by(m.Run.created_at.desc(), m.Run.id)
                .limit(RECENT_RUNS)
            ).scalars().all()
            data["runs"] = [run_to_json(r) for r in runs]
            return data

    def list(self, caller: Principal, limit: int | None, offset: int) -> Page:
        caller.require_user()
        query = select(m.Schedule).order_by(m.Schedule.name)
        if not caller.admin:
            query = query.where(m.Schedule.owner == caller.name)
        now = _now()
        with self.store.session() as s:
            return paginate(s, query, limit, offset, lambda sc: self.to_json(sc, now))

    # -- actions -------------------------------------------------------------
    async def set_suspended(self, caller: Principal, name: str, suspended: bool) -> dict[str, Any]:
        """Suspend or resume. On resume the most recent firing missed while suspended still starts
        if it is within the starting deadline (as a resumed CronJob does)."""
        with self.store.session() as s:
            sc = self._find(s, caller, name)
            schedule_id, ref, current = sc.id, sc.backend_ref, sc.suspended
        if current != suspended:
            if self.backend.fires_schedules and ref:
                await self.backend.suspend_schedule(ref, suspended)
            with self.store.session() as s:
                s.execute(update(m.Schedule).where(m.Schedule.id == schedule_id)
                          .values(suspended=suspended, updated_at=_now()))
        return self.get(caller, name)

    async def delete(self, caller: Principal, name: str) -> None:
        """Stop firing, cancel the firings still running; their runs stay on record."""
        with self.store.session() as s:
            sc = self._find(s, caller, name)
            schedule_id, ref, owner = sc.id, sc.backend_ref, sc.owner
        if self.backend.fires_schedules and ref:
            await self.backend.delete_schedule(ref)
        self._remove(schedule_id)
        with self.store.session() as s:
            active = s.execute(select(m.Run.id).where(m.Run.schedule_id == schedule_id,
                                                      m.Run.status.in_(ACTIVE))).scalars().all()
        for run_id in active:
            try:
                await self.runs.cancel(caller, run_id)
            except Conflict:  # it ended meanwhile
                pass
            except PlatformError as exc:
                log.warning("schedule %s deleted: run %s of %s not cancelled: %s", name, run_id, owner, exc.message)

    # -- firing --------------------------------------------------------------
    async def reconcile_once(self, now: dt.datetime | None = None) -> None:
        """One pass: record the backend's firings, or fire what is due (see the module docstring)."""
        if self.backend.fires_schedules:
            await self.record_firings()
        else:
            await self.fire_due(now or _now())

    async def fire_due(self, now: dt.datetime) -> None:
        with self.store.session() as s:
            rows = s.execute(
                select(m.Schedule.id, m.Schedule.cron, m.Schedule.timezone, m.Schedule.next_fire_at,
                       m.Schedule.starting_deadline_seconds, m.Schedule.firing_run_id, m.Schedule.firing_at)
                .where(m.Schedule.backend == self.backend.name,
                       or_(m.Schedule.firing_run_id.is_not(None),
                           and_(m.Schedule.suspended.is_not(True), m.Schedule.next_fire_at <= now)))
            ).all()
        for row in rows:
            if row.firing_run_id is not None:  # claimed by a server that stopped before recording it
                await self._submit(row.id, row.firing_run_id, row.firing_at, now)
                continue
            step = cron.plan(row.cron, row.timezone, row.next_fire_at, now, row.starting_deadline_seconds)
            if step is None:
                continue
            run_id = uuid.uuid4().hex[:16] if step.fire_at else None
            values: dict[str, Any] = {"next_fire_at": step.next_fire_at, "firing_run_id": run_id,
                                      "firing_at": step.fire_at}
            if step.fire_at is None:
                values["last_error"] = (f"missed {step.missed} firing(s): the server was down or the schedule "
                                        f"suspended for more than its starting deadline")
            with self.store.session() as s:
                claimed = s.execute(
                    update(m.Schedule)
                    .where(m.Schedule.id == row.id, m.Schedule.next_fire_at == row.next_fire_at,
                           m.Schedule.firing_run_id.is_(None))
                    .values(**values)
                ).rowcount
            if claimed and run_id:
                if step.missed:
                    log.info("schedule %s: %d firing(s) missed; firing once for %s", row.id, step.missed,
                             step.fire_at)
                await self._submit(row.id, run_id, step.fire_at, now)

    async def _submit(self, schedule_id: str, run_id: str, fire_at: dt.datetime | None, now: dt.datetime) -> None:
        """Submit a claimed firing as run ``run_id`` (once: the id is the run's primary key)."""
        error: str | None = None
        submitted = False
        with self.store.session() as s:
            sc = s.get(m.Schedule, schedule_id)
            if sc is None:
                return
            done = s.get(m.Run, run_id) is not None
            fire_at = fire_at or now
            active = s.execute(select(m.Run.id).where(m.Run.schedule_id == schedule_id,
                                                      m.Run.status.in_(ACTIVE))).scalars().first()
            user = s.get(m.User, sc.owner)
            caller = Principal(sc.owner, admin=bool(user is not None and user.admin))
            req = RunRequest(
                model=sc.version.model.name,
                version=sc.version.version,
                kind="batch-predict",
                hyperparameters=dict(sc.hyperparameters),
                hardware=sc.hardware.get("name"),
                environment=sc.environment.get("name"),
                source_run_id=sc.source_run_id,
                inputs=sc.inputs,
                outputs=cron.expand_outputs(sc.outputs, run_id, fire_at, sc.timezone),
            )
            deadline = sc.starting_deadline_seconds
        if done:
            submitted = True  # recorded before the server stopped
        elif active is not None:
            error = (f"skipped the firing due {fire_at.isoformat()}: run {active} of an earlier firing is still "
                     "running (concurrency policy Forbid)")
        elif (now - fire_at).total_seconds() > deadline:
            error = f"missed the firing due {fire_at.isoformat()}: more than {deadline} s late"
        else:
            try:
                await self.runs.submit(caller, req, run_id=run_id, schedule_id=schedule_id)
                submitted = True
                log.info("schedule %s fired for %s: run %s", schedule_id, fire_at.isoformat(), run_id)
            except IntegrityError:  # another server recorded it first
                return
            except BackendError as exc:  # recorded as a failed run
                submitted = bool(exc.details.get("run_id"))
                error = exc.message
            except PlatformError as exc:  # e.g. the input file is gone: no run could be recorded
                error = f"the firing due {fire_at.isoformat()} could not start: {exc.message}"
            except Exception as exc:
                log.exception("schedule %s: firing %s", schedule_id, run_id)
                error = f"the firing due {fire_at.isoformat()} could not start: {exc.__class__.__name__}: {exc}"
        if error:
            log.warning("schedule %s: %s", schedule_id, error)
        values: dict[str, Any] = {"firing_run_id": None, "firing_at": None, "last_error": error}
        if submitted:
            values.update(last_fired_at=fire_at, last_run_id=run_id)
        with self.store.session() as s:
            s.execute(update(m.Schedule).where(m.Schedule.id == schedule_id, m.Schedule.firing_run_id == run_id)
                      .values(**values))

    async def record_firings(self) -> None:
        """Record a run for each firing the backend reports that is not recorded yet."""
        with self.store.session() as s:
            schedule_refs = list(s.execute(select(m.Schedule.backend_ref).where(
                m.Schedule.backend == self.backend.name)).scalars())
        if not schedule_refs:
            return
        firings = await self.backend.schedule_firings([ref for ref in schedule_refs if ref])
        if not firings:
            return
        with self.store.session() as s:
            known = set(s.execute(select(m.Schedule.id).where(
                m.Schedule.id.in_({f.schedule_id for f in firings}),
                m.Schedule.backend == self.backend.name)).scalars())
            refs = [f.ref for f in firings if f.schedule_id in known]
            recorded = set(s.execute(select(m.Run.id).where(m.Run.id.in_(refs))).scalars()) if refs else set()
        for firing in firings:
            if firing.schedule_id not in known or firing.ref in recorded:
                continue
            if len(firing.ref) > RUN_ID_MAX:
                if firing.ref not in self._skipped_firings:
                    self._skipped_firings.add(firing.ref)
                    log.warning("schedule %s: Job %s is not recorded: its name is the run id, at most %d "
                                "characters", firing.schedule_id, firing.ref, RUN_ID_MAX)
                continue
            try:
                self._record(firing)
            except IntegrityError:  # recorded meanwhile (another server)
                continue

    def _record(self, firing: Firing) -> None:
        when = firing.created_at or _now()
        with self.store.session() as s:
            sc = s.get(m.Schedule, firing.schedule_id)
            if sc is None:
                return
            s.add(m.Run(
                id=firing.ref,
                kind="batch-predict",
                status=RunState.PENDING.value,
                version=sc.version,
                hyperparameters=dict(sc.hyperparameters),
                hardware=sc.hardware,
                environment=sc.environment,
                image=sc.image,
                image_digest=_digest_of(sc.image),
                git_commit=sc.version.git_commit,
                launched_by=sc.owner,
                backend=self.backend.name,
                backend_ref=firing.backend_ref or firing.ref,
                source_run_id=sc.source_run_id,
                inputs=sc.inputs,
                outputs=cron.expand_outputs(sc.outputs, firing.ref, when, sc.timezone),
                schedule_id=sc.id,
                created_at=when,
            ))
            s.flush()
            if sc.last_fired_at is None or when >= sc.last_fired_at:
                sc.last_fired_at = when
                sc.last_run_id = firing.ref
        log.info("schedule %s fired: run %s", firing.schedule_id, firing.ref)
