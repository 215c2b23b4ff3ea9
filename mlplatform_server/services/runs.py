"""Runs: training and batch prediction, their metrics, logs and reconciliation."""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from sqlalchemy import bindparam, func, insert, literal, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.orm import joinedload

from .. import contract
from ..backends.base import Backend, Hardware, RunSpec, RunState, RunStatus
from ..config import HardwareSize, PlatformConfig
from ..errors import BackendError, Conflict, InvalidInput, NotFound
from ..store import models as m
from ..store.db import Store
from ..store.group_commit import GroupInsert
from .auth import Principal, digest, new_token
from .models import ModelService, stored_contract
from .paging import Page, check_fields, paginate

# Between full reconcile passes a watching backend's changes are enough (see Backend.changed_refs);
# a full pass still reads every unfinished run this often (timeouts, anything a watch missed).
FULL_PASS_SECONDS = 30.0
# A pending run whose Job is not there yet is left alone this long: with several platform replicas,
# another one may be creating it (the run is recorded with its Job name before the create).
SUBMIT_GRACE_SECONDS = 60.0
# A backend call that makes a planned reference (a Job) ends well within the grace, so that the
# leading server (maybe another one) never takes a create still in flight for a Job deleted outside.
SUBMIT_DEADLINE_SECONDS = 45.0

log = logging.getLogger("mlplatform.runs")

KINDS = ("train", "batch-predict")
ACTIVE = (RunState.PENDING.value, RunState.RUNNING.value)
METRIC_PREFIX = "MLP_METRIC "
# What spec_for reads of a run's version and model, in the runs' own query (not the module source).
_SPEC_COLUMNS = (joinedload(m.Run.version, innerjoin=True).load_only(m.ModelVersion.version, m.ModelVersion.model_id)
                 .joinedload(m.ModelVersion.model, innerjoin=True).load_only(m.Model.name))


@dataclass(frozen=True)
class RunRequest:
    """What a user asks for; validated by `RunService.submit`."""

    model: str
    version: str | None = None
    kind: str = "train"
    hyperparameters: dict[str, Any] | None = None
    hardware: str | None = None
    environment: str | None = None
    source_run_id: str | None = None  # batch prediction: the training run whose artifacts to use
    inputs: str | None = None
    outputs: str | None = None
    timeout_seconds: int | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "RunRequest":
        check_fields(body, set(cls.__dataclass_fields__))
        if not isinstance(body.get("model"), str):
            raise InvalidInput("'model' (the model name) is required")
        hp = body.get("hyperparameters") or {}
        if not isinstance(hp, dict):
            raise InvalidInput("'hyperparameters' must be an object of name → value")
        timeout = body.get("timeout_seconds")
        if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
            raise InvalidInput(f"'timeout_seconds' must be a positive integer, got {timeout!r}")
        for key in ("version", "hardware", "environment", "source_run_id", "inputs", "outputs", "kind"):
            if body.get(key) is not None and not isinstance(body[key], str):
                raise InvalidInput(f"'{key}' must be a string")
        return cls(**{**body, "hyperparameters": hp})


_INSERT_RUN = insert(m.Run)
PREPARE_FAILED = "the platform could not prepare the run for its backend (an internal error: the server's log has it)"
_Prepared = tuple[dict[str, Any], m.ModelVersion, str | None]  # a submit's row, its version, its schedule's name


class ScheduleName(NamedTuple):
    name: str


@dataclass(slots=True)
class InsertedRun:
    """A run just inserted: its row's values and its version, all its answer and its backend spec
    read (an ORM object, never to be added to a session, cost several times as much to make). Not
    started, no metrics yet."""

    id: str
    kind: str
    status: str
    reason: str | None
    version_id: int
    hyperparameters: dict[str, Any]
    hardware: dict[str, Any]
    environment: dict[str, Any]
    image: str | None
    image_digest: str | None
    git_commit: str | None
    launched_by: str
    backend: str
    backend_ref: str | None
    token_digest: str | None
    source_run_id: str | None
    replicated_from: str | None
    inputs: str | None
    outputs: str | None
    timeout_seconds: int | None
    schedule_id: str | None
    created_at: dt.datetime
    version: m.ModelVersion
    schedule: ScheduleName | None
    started_at: None = None
    finished_at: None = None
    metrics: tuple[()] = ()


def _inserted_run(row: dict[str, Any], version: m.ModelVersion, schedule: str | None) -> InsertedRun:
    return InsertedRun(**row, version=version, schedule=ScheduleName(schedule) if schedule else None)


def run_to_json(run: m.Run | InsertedRun, metrics: dict[str, float] | None = None) -> dict[str, Any]:
    schedule = run.schedule
    return {
        "id": run.id,
        "kind": run.kind,
        "status": run.status,
        "reason": run.reason,
        "model": run.version.model.name,
        "version": run.version.version,
        "content_hash": run.version.content_hash,
        "hyperparameters": run.hyperparameters,
        "hardware": run.hardware,
        "environment": run.environment,
        "image": run.image,
        "image_digest": run.image_digest,
        "git_commit": run.git_commit,
        "launched_by": run.launched_by,
        "backend": run.backend,
        "source_run_id": run.source_run_id,
        "replicated_from": run.replicated_from,
        "inputs": run.inputs,
        "outputs": run.outputs,
        "timeout_seconds": run.timeout_seconds,
        "schedule_id": run.schedule_id,
        "schedule": schedule.name if schedule is not None else None,
        "metrics": metrics if metrics is not None else last_metrics(run),
        "created_at": m.iso(run.created_at),
        "started_at": m.iso(run.started_at),
        "finished_at": m.iso(run.finished_at),
    }


def last_metrics(run: m.Run | InsertedRun) -> dict[str, float]:
    latest: dict[str, m.Metric] = {}
    for metric in run.metrics:
        current = latest.get(metric.name)
        if current is None or (metric.step or 0, metric.id) >= (current.step or 0, current.id):
            latest[metric.name] = metric
    return {name: metric.value for name, metric in sorted(latest.items())}


def _age(created_at: dt.datetime | None) -> float:
    """Seconds since ``created_at`` (naive UTC, as stored); infinite when unknown."""
    if created_at is None:
        return float("inf")
    return (_now().replace(tzinfo=None) - created_at.replace(tzinfo=None)).total_seconds()


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


@functools.lru_cache(maxsize=256)
def _hardware_from_json(recorded: bytes) -> Hardware:
    fields = set(HardwareSize.model_fields)
    return HardwareSize.model_validate({k: v for k, v in orjson.loads(recorded).items() if k in fields}).to_hardware()


class RunService:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: PlatformConfig,
        models: ModelService,
        data_dir: Path,
        api_url: str,
    ) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.models = models
        self.data_dir = Path(data_dir)
        self.api_url = api_url
        self._last_full_pass = float("-inf")
        self._unmatched_refs: set[str] = set()
        self._submitting: set[str] = set()  # runs recorded with their reference whose submit is in flight
        self._inserts: GroupInsert[_Prepared] = GroupInsert(store, _INSERT_RUN)

    def run_dir(self, run_id: str) -> Path:
        return self.data_dir / "runs" / run_id

    # -- submit --------------------------------------------------------------
    async def submit(self, caller: Principal, req: RunRequest, replicated_from: str | None = None, *,
                     run_id: str | None = None, schedule_id: str | None = None) -> dict[str, Any]:
        """``run_id`` / ``schedule_id``: a schedule's firing (services/schedules.py) chooses its run's
        id beforehand (its outputs path holds it)."""
        caller.require_user()
        if req.kind not in KINDS:
            raise InvalidInput(f"Unknown run kind {req.kind!r}: expected one of {', '.join(KINDS)}")
        env_cfg = self.config.environment(req.environment)
        size = self.config.hardware_size(req.hardware)
        self.backend.check_hardware(size.to_hardware())
        token = new_token() if self.backend.issues_run_tokens else None
        run_id = run_id or uuid.uuid4().hex[:16]
        # A reference known before the call is recorded with the run, in the insert's transaction.
        planned = self.backend.planned_ref(run_id, caller.name)

        def prepare(conn: Connection) -> tuple[dict[str, Any], _Prepared]:
            """The run's row, in the transaction its insert shares with concurrent submits
            (store/group_commit.py); reads only, so an error here fails this submit alone."""
            version = self.models.resolve_for_run(conn, caller, req.model, req.version)
            info = stored_contract(version.module_source)
            contract.require_method(info, req.kind)
            hyperparameters = contract.coerce_hyperparameters(info.schema(), req.hyperparameters or {})
            source_run_id = None
            if req.kind == "batch-predict":
                with self.store.session_on(conn) as s:
                    source_run_id = self.batch_source(s, caller, req, version).id
            self.models.ensure_module_file(version)  # before the row: a failure here records nothing
            schedule = None
            if schedule_id:
                schedule = conn.execute(select(m.Schedule.name).where(m.Schedule.id == schedule_id)).scalar()
            row = {
                "id": run_id,
                "kind": req.kind,
                "status": RunState.PENDING.value,
                "reason": self.backend.initial_reason,
                "version_id": version.id,
                "hyperparameters": hyperparameters,
                "hardware": size.to_json(),
                "environment": env_cfg.to_json(),
                "image": version.image or env_cfg.image,
                "image_digest": _digest_of(version.image),
                "git_commit": version.git_commit,
                "launched_by": caller.name,
                "backend": self.backend.name,
                "backend_ref": planned,
                "token_digest": digest(token) if token else None,
                "source_run_id": source_run_id,
                "replicated_from": replicated_from,
                "inputs": req.inputs,
                "outputs": req.outputs,
                "timeout_seconds": req.timeout_seconds,
                "schedule_id": schedule_id,
                "created_at": m.utcnow(),
            }
            return row, (row, version, schedule)

        if planned is not None:
            self._submitting.add(run_id)  # the reconcile loop leaves it alone until its Job exists
        try:
            row, version, schedule = await self._inserts.insert(prepare)
            try:
                run = _inserted_run(row, version, schedule)
                spec = self.spec_for(run, token)
                answer = run_to_json(run, metrics={})  # what a GET would say (no reference)
            except Exception:  # a bug of ours, not the backend's: failed, never left pending; the API logs it
                log.warning("run %s: could not be prepared for the backend; recorded as failed", run_id)
                self._finish(run_id, RunStatus(RunState.FAILED, PREPARE_FAILED), backend_ref=None)
                raise
            try:
                ref = await self._submit_within_grace(spec, planned)
            except Exception as exc:  # the run is recorded as failed to start, never left pending
                reason = f"could not start on the {self.backend.name} backend: {exc}"
                log.warning("run %s: %s", run_id, reason)
                self._finish(run_id, RunStatus(RunState.FAILED, reason), backend_ref=None)
                raise BackendError(f"Run {run_id} {reason}", run_id=run_id) from None
        finally:
            self._submitting.discard(run_id)
        if ref != planned:
            with self.store.session() as s:
                s.execute(update(m.Run).where(m.Run.id == run_id).values(backend_ref=ref))
        return answer

    async def _submit_within_grace(self, spec: RunSpec, planned: str | None) -> str:
        if planned is None:
            return await self.backend.submit(spec)
        try:  # asyncio.timeout: a timer on this task (wait_for would make a task per submit)
            async with asyncio.timeout(SUBMIT_DEADLINE_SECONDS):
                return await self.backend.submit(spec)
        except TimeoutError:
            try:  # the create may have landed after all: the run is recorded as failed, so no Job of it may run
                async with asyncio.timeout(SUBMIT_DEADLINE_SECONDS):
                    await self.backend.cancel(planned, spec)
            except Exception as exc:
                log.warning("run %s: could not remove what its timed-out submit may have made (%s: %s); "
                            "look for %s", spec.run_id, exc.__class__.__name__, exc, planned)
            raise TimeoutError(f"the backend did not answer within {SUBMIT_DEADLINE_SECONDS:g} s") from None

    def batch_source(self, s, caller: Principal, req: RunRequest, version: m.ModelVersion) -> m.Run:
        """The succeeded training run whose artifacts a batch prediction of ``version`` uses, after
        checking its inputs and outputs (a schedule checks its template run with it too)."""
        if not req.source_run_id:
            raise InvalidInput("Batch prediction needs 'source_run_id': the training run whose artifacts to use")
        if not req.inputs or not req.outputs:
            raise InvalidInput("Batch prediction needs 'inputs' and 'outputs' paths")
        source = self.find(s, caller, req.source_run_id)
        if source.kind != "train" or source.status != RunState.SUCCEEDED.value:
            raise InvalidInput(
                f"Run {source.id} is a {source.kind} run in state {source.status}; "
                "batch prediction needs a succeeded training run"
            )
        if source.version.model_id != version.model_id:
            raise InvalidInput(f"Run {source.id} trained model {source.version.model.name!r}, not {req.model!r}")
        if not Path(req.inputs).exists():
            raise InvalidInput(f"Input path {req.inputs!r} does not exist on the platform host")
        return source

    def spec_for(self, run: m.Run | InsertedRun, token: str | None = None) -> RunSpec:
        """The backend's view of a stored run (rebuilt after restarts; token only at submit)."""
        version = run.version
        run_dir = self.run_dir(run.id)
        module_path = self.models.module_path(version.model.name, version.version)
        artifacts = (
            self.run_dir(run.source_run_id) / "artifacts" if run.kind == "batch-predict" else run_dir / "artifacts"
        )
        env = {
            "MLP_RUN_ID": run.id,
            "MLP_URL": self.api_url,
            "MLP_MODULE_PATH": str(module_path),
            "MLP_HYPERPARAMETERS": json.dumps(run.hyperparameters),
            "MLP_ARTIFACTS": str(artifacts),
            "MLP_RESULT_PATH": str(run_dir / "result.json"),
        }
        if token:
            env["MLP_RUN_TOKEN"] = token
        if run.inputs:
            env["MLP_INPUTS"] = run.inputs
        if run.outputs:
            env["MLP_OUTPUTS"] = run.outputs
        return RunSpec(
            run_id=run.id,
            action=run.kind,
            user=run.launched_by,
            model=version.model.name,
            version=version.version,
            module_path=module_path,
            run_dir=run_dir,
            hyperparameters=run.hyperparameters,
            hardware=self.config_hardware(run.hardware),
            image=run.image,
            env=env,
            inputs=Path(run.inputs) if run.inputs else None,
            outputs=Path(run.outputs) if run.outputs else None,
            source_artifacts=artifacts if run.kind == "batch-predict" else None,
            timeout_seconds=run.timeout_seconds,
        )

    @staticmethod
    def config_hardware(recorded: dict[str, Any]) -> Hardware:
        """The backend's Hardware from the size recorded with a run (as it was at launch). Runs
        share a few sizes and every reconcile pass asks again: each recorded size is validated once."""
        return _hardware_from_json(orjson.dumps(recorded, option=orjson.OPT_SORT_KEYS))

    # -- queries -------------------------------------------------------------
    def get(self, caller: Principal, run_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            return run_to_json(self.find(s, caller, run_id))

    def list(
        self, caller: Principal, limit: int | None, offset: int, status: str | None = None, model: str | None = None
    ) -> Page:
        caller.require_user()
        query = select(m.Run).order_by(m.Run.created_at.desc(), m.Run.id)
        if not caller.admin:
            query = query.where(m.Run.launched_by == caller.name)
        if status:
            query = query.where(m.Run.status == status)
        if model:
            query = query.join(m.ModelVersion).join(m.Model).where(m.Model.name == model)
        with self.store.session() as s:
            return paginate(s, query, limit, offset, run_to_json)

    def find(self, s, caller: Principal, run_id: str) -> m.Run:
        run = s.get(m.Run, run_id)
        if run is None or not caller.can_touch(run.launched_by):
            raise NotFound(f"No run with id {run_id!r}")
        return run

    # -- actions -------------------------------------------------------------
    async def cancel(self, caller: Principal, run_id: str) -> dict[str, Any]:
        with self.store.session() as s:
            run = self.find(s, caller, run_id)
            if RunState(run.status).final:
                raise Conflict(f"Run {run_id} already ended ({run.status})")
            spec, ref = self.spec_for(run), run.backend_ref
        self._finish(run_id, RunStatus(RunState.CANCELLED, f"cancelled by {caller.name}"))
        if ref:
            await self.backend.cancel(ref, spec)
            await self._cleanup(ref, spec)
        return self.get(caller, run_id)

    async def replicate(self, caller: Principal, run_id: str) -> dict[str, Any]:
        """Launch the same model version, hyperparameters, hardware and environment again."""
        with self.store.session() as s:
            run = self.find(s, caller, run_id)
            req = RunRequest(
                model=run.version.model.name,
                version=run.version.version,
                kind=run.kind,
                hyperparameters=dict(run.hyperparameters),
                hardware=run.hardware.get("name"),
                environment=run.environment.get("name"),
                source_run_id=run.source_run_id,
                inputs=run.inputs,
                outputs=run.outputs,
                timeout_seconds=run.timeout_seconds,
            )
        return await self.submit(caller, req, replicated_from=run_id)

    # -- metrics -------------------------------------------------------------
    def record_metrics(self, caller: Principal, run_id: str, metrics: Any) -> int:
        if caller.run_id is not None and caller.run_id != run_id:
            raise NotFound(f"No run with id {run_id!r}")
        rows = [_metric_row(item, i) for i, item in enumerate(_as_list(metrics))]
        with self.store.session() as s:
            run = s.get(m.Run, run_id)
            if run is None or not (caller.run_id == run_id or caller.can_touch(run.launched_by)):
                raise NotFound(f"No run with id {run_id!r}")
            for row in rows:
                run.metrics.append(m.Metric(**row))
        return len(rows)

    def list_metrics(self, caller: Principal, run_id: str, name: str | None = None) -> list[dict[str, Any]]:
        with self.store.session() as s:
            run = self.find(s, caller, run_id)
            return [
                {"name": x.name, "step": x.step, "value": x.value, "time": m.iso(x.time)}
                for x in run.metrics
                if name is None or x.name == name
            ]

    # -- logs ----------------------------------------------------------------
    async def logs(self, caller: Principal, run_id: str, follow: bool = False) -> AsyncIterator[str]:
        with self.store.session() as s:
            run = self.find(s, caller, run_id)
            spec, ref, status = self.spec_for(run), run.backend_ref, RunState(run.status)
        kept = spec.run_dir / "logs.txt"
        if (status.final or not ref) and kept.exists():
            yield kept.read_text(errors="replace")
            return
        if not ref:
            return
        async for chunk in self.backend.logs(ref, spec, follow=follow):
            yield chunk

    # -- reconciliation ------------------------------------------------------
    def forget_changes(self) -> None:
        """The next pass looks at every unfinished run (after standing by while another server led)."""
        self._last_full_pass = float("-inf")

    async def reconcile_once(self) -> None:
        """Ask the backend for the true state of unfinished runs and record it: every one on a
        full pass; between full passes (a watching backend), only those it says changed."""
        changed = self.backend.changed_refs()
        now = time.monotonic()
        full = changed is None or now - self._last_full_pass >= FULL_PASS_SECONDS
        query = select(m.Run).where(m.Run.status.in_(ACTIVE), m.Run.backend == self.backend.name)
        if full:
            self._last_full_pass = now
            self._unmatched_refs.clear()
        else:
            # A change seen before its run's reference was stored is looked at again next time.
            refs = changed | self._unmatched_refs
            if not refs:
                return
            query = query.where(m.Run.backend_ref.in_(refs))
        with self.store.session() as s:
            runs = s.execute(
                query.options(_SPEC_COLUMNS)
            ).scalars().all()
            if not full:
                self._unmatched_refs = refs - {r.backend_ref for r in runs}
            work = [(r.id, r.backend_ref, self.spec_for(r), r.status, r.started_at, r.timeout_seconds, r.reason,
                     r.created_at) for r in runs]
        writes = _PassWrites()
        try:
            await self._reconcile_runs(work, writes)
        finally:  # what was learnt before an error is kept
            writes.flush(self.store)

    async def _reconcile_runs(self, work: list[tuple], writes: "_PassWrites") -> None:
        for run_id, ref, spec, recorded, started_at, timeout, recorded_reason, created_at in work:
            if ref is None:
                continue  # submit in flight
            if run_id in self._submitting:  # recorded with its reference, its Job not created yet
                self._unmatched_refs.add(ref)  # looked at again next time
                continue
            try:
                status = await self.backend.status(ref, spec)
            except Exception:  # a backend hiccup is not a run failure
                log.exception("status of run %s", run_id)
                continue
            if status.missing and recorded == RunState.PENDING.value and _age(created_at) < SUBMIT_GRACE_SECONDS:
                # Recorded with its reference before the create: another replica may be creating it.
                self._unmatched_refs.add(ref)
                continue
            if (
                timeout
                and started_at
                and not status.state.final
                and (_now() - started_at).total_seconds() > timeout
            ):
                await self.backend.cancel(ref, spec)
                status = RunStatus(RunState.FAILED, f"deadline exceeded: ran longer than {timeout} s")
            if status.state.value == recorded:
                if status.reason != recorded_reason:  # e.g. why a pending run is not scheduled
                    writes.reasons.append({"run_id": run_id, "was": recorded, "new_reason": status.reason})
                continue
            if status.state.final:
                # The log is kept and the metrics printed while the API was unreachable are read
                # back before the final state is recorded: whoever sees the run finished sees them.
                await self._cleanup(ref, spec)
                self._finish(run_id, status)
            elif status.state == RunState.RUNNING:
                writes.started.append({"run_id": run_id, "at": _now(), "new_reason": status.reason})

    def _finish(self, run_id: str, status: RunStatus, **values: Any) -> bool:
        """Record a final state once (and ``values``); a run already final is never changed. A run
        that ends without having been seen running started when it ended."""
        now = _now()
        with self.store.transaction() as connection:
            result = connection.execute(
                update(m.Run)
                .where(m.Run.id == run_id, m.Run.status.in_(ACTIVE))
                .values(status=status.state.value, reason=status.reason, finished_at=now, token_digest=None,
                        started_at=func.coalesce(m.Run.started_at, literal(now, m.Run.started_at.type)),
                        **values)
            )
            return bool(result.rowcount)

    async def _cleanup(self, ref: str, spec: RunSpec) -> None:
        try:
            await self.backend.cleanup(ref, spec)
        except Exception:
            log.exception("cleanup of run %s", spec.run_id)
        self._recover_metrics(spec)

    def _recover_metrics(self, spec: RunSpec) -> None:
        """Metrics printed while the API was unreachable are read back from the kept log."""
        path = spec.run_dir / "logs.txt"
        if not path.exists():
            return
        printed = []
        for line in path.read_text(errors="replace").splitlines():
            if line.startswith(METRIC_PREFIX):
                try:
                    printed.append(_metric_row(json.loads(line[len(METRIC_PREFIX):]), 0))
                except (ValueError, InvalidInput):
                    continue
        if not printed:
            return
        with self.store.session() as s:
            run = s.get(m.Run, spec.run_id)
            if run is None:
                return
            seen = {(x.name, x.step, round(x.value, 12), x.time.replace(microsecond=0)) for x in run.metrics}
            for row in printed:
                key = (row["name"], row["step"], round(row["value"], 12), row["time"].replace(microsecond=0))
                if key not in seen:
                    run.metrics.append(m.Metric(**row))
                    seen.add(key)


def _as_list(metrics: Any) -> list[Any]:
    if isinstance(metrics, dict) and "metrics" in metrics:
        metrics = metrics["metrics"]
    if not isinstance(metrics, list):
        raise InvalidInput("Expected {'metrics': [{'name': str, 'value': number, 'step': int|null}, ...]}")
    return metrics


def _metric_row(item: Any, index: int) -> dict[str, Any]:
    where = f"metrics[{index}]"
    if not isinstance(item, dict):
        raise InvalidInput(f"{where}: expected an object with name and value")
    name, value, step = item.get("name"), item.get("value"), item.get("step")
    if not isinstance(name, str) or not name or len(name) > 128:
        raise InvalidInput(f"{where}.name: expected a non-empty string of at most 128 characters")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidInput(f"{where}.value: expected a finite number, got {value!r}")
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise InvalidInput(f"{where}.step: expected an integer or null, got {step!r}")
    when = _now()
    if item.get("time"):
        try:
            when = dt.datetime.fromisoformat(str(item["time"]))
        except ValueError:
            raise InvalidInput(f"{where}.time: expected an ISO 8601 time, got {item['time']!r}") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.timezone.utc)
    return {"name": name, "value": float(value), "step": step, "time": when}


def _digest_of(image: str | None) -> str | None:
    if image and "@sha256:" in image:
        return image.split("@", 1)[1]
    return None


_RUNS = m.Run.__table__
# A reconcile pass's writes, as two executemany statements in one transaction. Each row is still
# guarded by the state it was read in (a run finished meanwhile, e.g. cancelled, is left alone).
_SET_REASON = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"), _RUNS.c.status == bindparam("was"))
               .values(reason=bindparam("new_reason")))
_SET_RUNNING = (update(_RUNS).where(_RUNS.c.id == bindparam("run_id"), _RUNS.c.status == RunState.PENDING.value)
                .values(status=RunState.RUNNING.value, started_at=bindparam("at"), reason=bindparam("new_reason")))


@dataclass
class _PassWrites:
    """The non-final changes one reconcile pass found: written together at its end (one
    transaction a pass instead of one a run: with hundreds of runs starting at once, most of the
    pass's CPU went into per-run transactions)."""

    reasons: list[dict[str, Any]] = field(default_factory=list)
    started: list[dict[str, Any]] = field(default_factory=list)

    def flush(self, store: Store) -> None:
        if not (self.reasons or self.started):
            return
        with store.session() as s:
            connection = s.connection()
            if self.reasons:
                connection.execute(_SET_REASON, self.reasons)
            if self.started:
                connection.execute(_SET_RUNNING, self.started)
        self.reasons, self.started = [], []
