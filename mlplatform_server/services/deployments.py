"""Deployments: a trained run served as a web service (`POST /invocations`).

Every deploy to a name records a revision (run, model version, image, hardware, environment,
replicas); a new version deployed to an existing name is a rolling update (Kubernetes patches
the same Deployment; the process and docker backends start a new server, then stop the old one).
Rollback deploys an earlier revision again as a new revision; scaling changes replicas or the
autoscaler without making a revision (as `kubectl rollout undo` / `kubectl scale` do).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import uuid
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .. import contract
from ..backends.base import Autoscale, Backend, DeploymentSpec, RunState
from ..config import PlatformConfig
from ..errors import BackendError, Conflict, InvalidInput, NotFound
from ..store import models as m
from ..store.coordination import DEPLOYMENT
from ..store.db import Store
from .auth import Principal, owned_by_name
from .models import MODEL_NAME, ModelService, stored_contract
from .paging import Page, check_fields, paginate
from .runs import RunService

log = logging.getLogger("mlplatform.deployments")

LIVE = ("deploying", "ready")
MAX_REPLICAS = 64
AUTOSCALE_FIELDS = ("min", "max", "target_cpu")
# The columns a rolled-out change writes; restored as they were when the backend refuses it.
_ROLLOUT_STATE = ("version_id", "run_id", "image", "hardware", "environment", "replicas", "revision", "generation",
                  "autoscale_min", "autoscale_max", "autoscale_target_cpu", "status", "reason", "url")


def _integer(value: Any, what: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"'{what}' must be an integer from {low} to {high}, got {value!r}")
    return value


def parse_autoscale(value: Any) -> Autoscale | None:
    """``{"min": a, "max": b, "target_cpu": percent}`` → Autoscale; null or false → autoscaling off."""
    if value is None or value is False:
        return None
    if not isinstance(value, dict):
        raise InvalidInput("'autoscale' must be an object {\"min\": N, \"max\": N, \"target_cpu\": percent} "
                           f"or null (off), got {value!r}")
    unknown = sorted(set(value) - set(AUTOSCALE_FIELDS))
    if unknown:
        raise InvalidInput(f"Unknown field(s) in 'autoscale': {', '.join(unknown)}; expected {', '.join(AUTOSCALE_FIELDS)}")
    for key in ("min", "max"):
        if key not in value:
            raise InvalidInput(f"'autoscale.{key}' is required (an integer from 1 to {MAX_REPLICAS})")
    low = _integer(value["min"], "autoscale.min", 1, MAX_REPLICAS)
    high = _integer(value["max"], "autoscale.max", 1, MAX_REPLICAS)
    if low > high:
        raise InvalidInput(f"'autoscale.min' ({low}) must not be more than 'autoscale.max' ({high})")
    return Autoscale(low, high, _integer(value.get("target_cpu", 70), "autoscale.target_cpu", 1, 100))


@dataclass(frozen=True)
class DeployRequest:
    model: str
    run_id: str
    version: str | None = None
    name: str | None = None
    replicas: int = 1
    hardware: str | None = None
    environment: str | None = None
    autoscale: Autoscale | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "DeployRequest":
        check_fields(body, set(cls.__dataclass_fields__))
        for key in ("model", "run_id"):
            if not isinstance(body.get(key), str):
                raise InvalidInput(f"'{key}' is required (a string)")
        _integer(body.get("replicas", 1), "replicas", 1, MAX_REPLICAS)
        return cls(**{**body, "autoscale": parse_autoscale(body.get("autoscale"))})


@dataclass(frozen=True)
class ScaleRequest:
    """A fixed number of replicas (autoscaling off), or the autoscaler's bounds (null: off,
    back to the deployment's fixed replicas)."""

    replicas: int | None = None
    autoscale: Autoscale | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "ScaleRequest":
        check_fields(body, {"replicas", "autoscale"})
        if not body:
            raise InvalidInput(f"Give 'replicas' (an integer from 0 to {MAX_REPLICAS}) or 'autoscale' "
                               "({\"min\": N, \"max\": N, \"target_cpu\": percent}, or null to turn it off)")
        autoscale = parse_autoscale(body.get("autoscale"))
        if "replicas" in body and autoscale is not None:
            raise InvalidInput("Give either 'replicas' (a fixed number) or 'autoscale', not both")
        replicas = _integer(body["replicas"], "replicas", 0, MAX_REPLICAS) if "replicas" in body else None
        return cls(replicas, autoscale)


@dataclass(frozen=True)
class _Target:
    """What a revision serves."""

    version_id: int
    run_id: str
    image: str | None
    hardware: dict[str, Any]
    environment: dict[str, Any]


def autoscale_of(dep: m.Deployment) -> Autoscale | None:
    if dep.autoscale_min is None or dep.autoscale_max is None:
        return None
    return Autoscale(dep.autoscale_min, dep.autoscale_max, dep.autoscale_target_cpu or 70)


def autoscale_columns(autoscale: Autoscale | None) -> dict[str, int | None]:
    """The Deployment columns that hold `autoscale` (all None: off); read back by `autoscale_of`."""
    return {"autoscale_min": autoscale.min_replicas if autoscale else None,
            "autoscale_max": autoscale.max_replicas if autoscale else None,
            "autoscale_target_cpu": autoscale.target_cpu if autoscale else None}


def revision_to_json(rev: m.DeploymentRevision, current: int) -> dict[str, Any]:
    return {
        "revision": rev.revision,
        "current": rev.revision == current,
        "model": rev.version.model.name,
        "version": rev.version.version,
        "run_id": rev.run_id,
        "image": rev.image,
        "hardware": rev.hardware,
        "environment": rev.environment,
        "replicas": rev.replicas,
        "rollback_of": rev.rollback_of,
        "created_by": rev.created_by,
        "created_at": rev.created_at.isoformat(),
    }


def deployment_to_json(dep: m.Deployment) -> dict[str, Any]:
    return {
        "id": dep.id,
        "name": dep.name,
        "owner": dep.owner,
        "model": dep.version.model.name,
        "version": dep.version.version,
        "run_id": dep.run_id,
        "status": dep.status,
        "reason": dep.reason,
        "url": dep.url,
        "replicas": dep.replicas,
        "autoscale": autoscale.to_json() if (autoscale := autoscale_of(dep)) else None,
        "revision": dep.revision,
        "hardware": dep.hardware,
        "environment": dep.environment,
        "image": dep.image,
        "backend": dep.backend,
        "created_at": dep.created_at.isoformat(),
        "updated_at": dep.updated_at.isoformat(),
    }


class DeploymentService:
    def __init__(
        self,
        store: Store,
        backend: Backend,
        config: PlatformConfig,
        models: ModelService,
        runs: RunService,
        data_dir: Path,
    ) -> None:
        self.store = store
        self.backend = backend
        self.config = config
        self.models = models
        self.runs = runs
        self.data_dir = Path(data_dir)

    def _lock(self, name: str) -> AbstractAsyncContextManager[None]:
        """One change at a time per deployment name, across every server (the reconcile pass skips a
        name while it is held)."""
        return self.store.coordination.lock(DEPLOYMENT, name)

    def _check_scaling(self, name: str, replicas: int, autoscale: Autoscale | None) -> None:
        if self.backend.scales_in_place:
            return
        if autoscale is not None:
            raise InvalidInput(f"Autoscaling needs the kubernetes backend; deployment {name} runs on the "
                               f"{self.backend.name} backend (give a fixed number of replicas instead)")
        if replicas < 1:
            raise InvalidInput(f"The {self.backend.name} backend cannot scale deployment {name} to 0 replicas: it "
                               f"serves with one server of 1 to {MAX_REPLICAS} worker processes (the replicas). "
                               "Delete the deployment to stop it; scaling to 0 needs the kubernetes backend")

    async def deploy(self, caller: Principal, req: DeployRequest) -> dict[str, Any]:
        """Deploy a new name (revision 1), or a new revision of an existing one: a rolling update."""
        caller.require_user()
        name = req.name or req.model
        if not MODEL_NAME.match(name):
            raise InvalidInput(f"Invalid deployment name {name!r}: expected lowercase letters, digits and '-'")
        self._check_scaling(name, req.replicas, req.autoscale)
        env_cfg = self.config.environment(req.environment)
        size = self.config.hardware_size(req.hardware)
        self.backend.check_hardware(size.to_hardware())
        with self.store.session() as s:
            run = self.runs.find(s, caller, req.run_id)
            version = run.version if req.version is None else self.models.resolve(s, caller, req.model, req.version)
            if run.version.model.name != req.model:
                raise InvalidInput(f"Run {run.id} trained model {run.version.model.name!r}, not {req.model!r}")
            if run.kind != "train" or run.status != RunState.SUCCEEDED.value:
                raise InvalidInput(f"Run {run.id} is a {run.kind} run in state {run.status}; deploy a succeeded training run")
            contract.require_method(stored_contract(version.module_source), "serve")
            target = _Target(version.id, run.id, version.image or env_cfg.image, size.to_json(), env_cfg.to_json())
        async with self._lock(name):
            return await self._roll_out(caller, name, target, req.replicas, req.autoscale)

    async def rollback(self, caller: Principal, name: str, revision: int | None = None) -> dict[str, Any]:
        """Deploy revision `revision` (default: the one before the current) again, as a new revision,
        keeping the current replicas and autoscaler."""
        if revision is not None:
            _integer(revision, "revision", 1, 2**31 - 1)
        async with self._lock(name):
            with self.store.session() as s:
                dep = self._deployment(s, caller, name)
                revisions = {r.revision: r for r in dep.revisions}
                if revision is None:
                    earlier = [n for n in revisions if n < dep.revision]
                    if not earlier:
                        raise InvalidInput(f"Deployment {name} has no revision before its current revision "
                                           f"{dep.revision} to roll back to")
                    revision = max(earlier)
                elif revision not in revisions:
                    raise NotFound(f"Deployment {name} has no revision {revision}; its revisions are "
                                   f"{', '.join(map(str, sorted(revisions)))}")
                if revision == dep.revision:
                    raise InvalidInput(f"Revision {revision} is already the current revision of deployment {name}")
                old = revisions[revision]
                target = _Target(old.version_id, old.run_id, old.image, dict(old.hardware), dict(old.environment))
                replicas, autoscale = dep.replicas, autoscale_of(dep)
            return await self._roll_out(caller, name, target, replicas, autoscale, rollback_of=revision)

    async def scale(self, caller: Principal, name: str, req: ScaleRequest) -> dict[str, Any]:
        """Change the replicas or the autoscaler; no new revision."""
        async with self._lock(name):
            with self.store.session() as s:
                dep = self._deployment(s, caller, name)
                replicas = dep.replicas if req.replicas is None else req.replicas
                self._check_scaling(name, replicas, req.autoscale)
                if dep.backend_ref is None:
                    raise InvalidInput(f"Deployment {name} never started ({dep.status}: {dep.reason or 'no reason'}); "
                                       "deploy it again")
                if not self.backend.scales_in_place and replicas == dep.replicas and dep.status in LIVE:
                    return deployment_to_json(dep)  # nothing to change: no restart
                generation = dep.generation + 1
                spec = dataclasses.replace(self.spec_for(dep), replicas=replicas, autoscale=req.autoscale,
                                           generation=generation)
                ref, dep_id = dep.backend_ref, dep.id
            if not self.backend.scales_in_place:  # a new server with `replicas` workers
                return await self._roll_out(caller, name, None, replicas, None)
            await self.backend.scale(ref, spec)  # written only once the backend has done it
            self._update(dep_id, replicas=replicas, generation=generation, **autoscale_columns(req.autoscale))
            return self.get(caller, name)

    def revisions(self, caller: Principal, name: str) -> dict[str, Any]:
        with self.store.session() as s:
            dep = self._deployment(s, caller, name)
            items = [revision_to_json(r, dep.revision) for r in dep.revisions]
            return {"name": name, "current": dep.revision, "items": items, "total": len(items)}

    async def _roll_out(self, caller: Principal, name: str, target: _Target | None, replicas: int,
                        autoscale: Autoscale | None, rollback_of: int | None = None) -> dict[str, Any]:
        """Serve `target` (None: the current revision again) under `name` with these replicas: the
        one path of deploy, rollback and scale-by-redeploy. The caller holds the name's lock.

        A new name is written first (and marked failed if the backend refuses it, so its reason
        shows); a change to an existing one is undone if the backend refuses it. Once the new
        server started, a backend that made a new one (new reference) has the old one stopped."""
        with self.store.session() as s:
            dep = s.execute(select(m.Deployment).where(m.Deployment.name == name)).scalar_one_or_none()
            if target is not None:
                version, run = s.get(m.ModelVersion, target.version_id), s.get(m.Run, target.run_id)
            before: dict[str, Any] | None = None
            old: tuple[str, DeploymentSpec] | None = None
            if dep is None:
                assert target is not None
                dep = m.Deployment(id=uuid.uuid4().hex[:16], name=name, owner=caller.name, backend=self.backend.name,
                                   revision=0, generation=0, replicas=replicas)
                s.add(dep)
            else:
                if not caller.can_touch(dep.owner):
                    raise Conflict(f"A deployment named {name!r} already exists (another user's); choose another name")
                if dep.backend != self.backend.name:
                    raise Conflict(f"Deployment {name} runs on the {dep.backend} backend, not {self.backend.name}; "
                                   "delete it first")
                before = {key: getattr(dep, key) for key in _ROLLOUT_STATE}
                if dep.backend_ref:
                    old = (dep.backend_ref, self.spec_for(dep))
            new_revision = None
            if target is not None:
                new_revision = max((r.revision for r in dep.revisions), default=0) + 1
                dep.version, dep.run = version, run
                dep.image, dep.hardware, dep.environment = target.image, target.hardware, target.environment
                dep.revision = new_revision
                dep.revisions.append(m.DeploymentRevision(
                    revision=new_revision, version=dep.version, run=dep.run, image=target.image,
                    hardware=target.hardware, environment=target.environment, replicas=replicas,
                    rollback_of=rollback_of, created_by=caller.name))
            dep.replicas = replicas
            for column, value in autoscale_columns(autoscale).items():
                setattr(dep, column, value)
            dep.generation += 1
            dep.status, dep.reason = "deploying", None
            s.flush()
            self.models.ensure_module_file(dep.version)
            spec, dep_id = self.spec_for(dep), dep.id
        try:
            ref = await self.backend.deploy(spec)
        except Exception as exc:
            reason = f"could not start on the {self.backend.name} backend: {exc}"
            if before is None:
                self._update(dep_id, status="failed", reason=reason)
                raise BackendError(f"Deployment {name} {reason}") from None
            self._restore(dep_id, before, new_revision)
            raise BackendError(f"Deployment {name} {reason}; it still serves as before") from None
        replaced = old is not None and old[0] != ref
        if replaced:
            try:
                await self.backend.undeploy(*old)
            except Exception:
                log.exception("deployment %s: stopping the replaced server %s", name, old[0])
        self._update(dep_id, backend_ref=ref, **({"url": None} if replaced else {}))
        return self.get(caller, name)

    def _restore(self, dep_id: str, before: dict[str, Any], revision: int | None) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is None:
                return
            for key, value in before.items():
                setattr(dep, key, value)
            for rev in list(dep.revisions):
                if rev.revision == revision:
                    dep.revisions.remove(rev)

    def spec_for(self, dep: m.Deployment) -> DeploymentSpec:
        version = dep.version
        artifacts = self.runs.run_dir(dep.run_id) / "artifacts"
        module_path = self.models.module_path(version.model.name, version.version)
        return DeploymentSpec(
            deployment_id=dep.id,
            name=dep.name,
            user=dep.owner,
            model=version.model.name,
            version=version.version,
            module_path=module_path,
            artifacts=artifacts,
            hardware=RunService.config_hardware(dep.hardware),
            image=dep.image,
            env={
                "MLP_MODULE_PATH": str(module_path),
                "MLP_ARTIFACTS": str(artifacts),
                "MLP_RUN_ID": dep.run_id,
                "MLP_HYPERPARAMETERS": json.dumps(dep.run.hyperparameters),
            },
            replicas=dep.replicas,
            deploy_dir=self.data_dir / "deployments" / dep.id,
            autoscale=autoscale_of(dep),
            generation=dep.generation,
        )

    def get(self, caller: Principal, name: str) -> dict[str, Any]:
        with self.store.session() as s:
            return deployment_to_json(self._deployment(s, caller, name))

    def list(self, caller: Principal, limit: int | None, offset: int) -> Page:
        caller.require_user()
        query = select(m.Deployment).order_by(m.Deployment.created_at.desc(), m.Deployment.id)
        if not caller.admin:
            query = query.where(m.Deployment.owner == caller.name)
        with self.store.session() as s:
            return paginate(s, query, limit, offset, deployment_to_json)

    async def delete(self, caller: Principal, name: str) -> None:
        async with self._lock(name):
            with self.store.session() as s:
                dep = self._deployment(s, caller, name)
                spec, ref = self.spec_for(dep), dep.backend_ref
            if ref:
                await self.backend.undeploy(ref, spec)
            with self.store.session() as s:
                dep = s.execute(select(m.Deployment).where(m.Deployment.name == name)).scalar_one_or_none()
                if dep is not None:
                    s.delete(dep)  # with its revisions

    def _deployment(self, s, caller: Principal, name: str) -> m.Deployment:
        return owned_by_name(s, caller, m.Deployment, name, "deployment")

    async def reconcile_once(self) -> None:
        with self.store.session() as s:
            deps = s.execute(
                select(m.Deployment).where(m.Deployment.status.in_(LIVE), m.Deployment.backend == self.backend.name)
            ).scalars().all()
            changing = self.store.coordination.held(DEPLOYMENT, [d.name for d in deps])
            work = [(d.id, d.backend_ref, self.spec_for(d), d.status, d.url, d.reason, d.generation) for d in deps
                    if d.name not in changing]  # a change is under way: its own writes say
        for dep_id, ref, spec, status, url, reason, generation in work:
            if ref is None:
                continue
            try:
                now = await self.backend.deployment_status(ref, spec)
            except Exception:
                log.exception("status of deployment %s", spec.name)
                continue
            if (now.state, now.url, now.reason) != (status, url, reason):
                self._update(dep_id, expect=(generation, ref), status=now.state, url=now.url, reason=now.reason)

    def _update(self, dep_id: str, expect: tuple[int, str] | None = None, **values: Any) -> None:
        """Write `values`; with `expect` (generation, backend_ref) only if no change was rolled out since."""
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is not None and (expect is None or (dep.generation, dep.backend_ref) == expect):
                for key, value in values.items():
                    setattr(dep, key, value)
                dep.updated_at = dt.datetime.now(dt.timezone.utc)
