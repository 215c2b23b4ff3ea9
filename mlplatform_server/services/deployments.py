"""Deployments: a trained run served as a web service (`POST /invocations`)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select

from .. import contract
from ..backends.base import Backend, DeploymentSpec, RunState
from ..config import PlatformConfig
from ..errors import BackendError, Conflict, InvalidInput, NotFound
from ..store import models as m
from ..store.db import Store
from .auth import Principal
from .models import MODEL_NAME, ModelService, stored_contract
from .paging import Page, check_fields, paginate
from .runs import RunService

log = logging.getLogger("mlplatform.deployments")

LIVE = ("deploying", "ready")


@dataclass(frozen=True)
class DeployRequest:
    model: str
    run_id: str
    version: str | None = None
    name: str | None = None
    replicas: int = 1
    hardware: str | None = None
    environment: str | None = None

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> "DeployRequest":
        check_fields(body, set(cls.__dataclass_fields__))
        for key in ("model", "run_id"):
            if not isinstance(body.get(key), str):
                raise InvalidInput(f"'{key}' is required (a string)")
        replicas = body.get("replicas", 1)
        if isinstance(replicas, bool) or not isinstance(replicas, int) or not 1 <= replicas <= 64:
            raise InvalidInput(f"'replicas' must be an integer from 1 to 64, got {replicas!r}")
        return cls(**body)


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

    async def deploy(self, caller: Principal, req: DeployRequest) -> dict[str, Any]:
        caller.require_user()
        name = req.name or req.model
        if not MODEL_NAME.match(name):
            raise InvalidInput(f"Invalid deployment name {name!r}: expected lowercase letters, digits and '-'")
        env_cfg = self.config.environment(req.environment)
        size = self.config.hardware_size(req.hardware)
        dep_id = uuid.uuid4().hex[:16]
        with self.store.session() as s:
            run = self.runs.find(s, caller, req.run_id)
            version = run.version if req.version is None else self.models.resolve(s, caller, req.model, req.version)
            if run.version.model.name != req.model:
                raise InvalidInput(f"Run {run.id} trained model {run.version.model.name!r}, not {req.model!r}")
            if run.kind != "train" or run.status != RunState.SUCCEEDED.value:
                raise InvalidInput(f"Run {run.id} is a {run.kind} run in state {run.status}; deploy a succeeded training run")
            contract.require_method(stored_contract(version.module_source), "serve")
            existing = s.execute(select(m.Deployment).where(m.Deployment.name == name)).scalar_one_or_none()
            if existing is not None:
                if not caller.can_touch(existing.owner) or existing.status in LIVE:
                    raise Conflict(f"A deployment named {name!r} already exists; delete it or choose another name")
                s.delete(existing)
                s.flush()
            dep = m.Deployment(
                id=dep_id,
                name=name,
                owner=caller.name,
                version=version,
                run_id=run.id,
                status="deploying",
                replicas=req.replicas,
                hardware=size.to_json(),
                environment=env_cfg.to_json(),
                image=version.image or env_cfg.image,
                backend=self.backend.name,
            )
            s.add(dep)
            s.flush()
            self.models.ensure_module_file(version)
            spec = self.spec_for(dep)
        try:
            ref = await self.backend.deploy(spec)
        except Exception as exc:
            reason = f"could not start on the {self.backend.name} backend: {exc}"
            self._update(dep_id, status="failed", reason=reason)
            raise BackendError(f"Deployment {name} {reason}") from None
        self._update(dep_id, backend_ref=ref)
        return self.get(caller, name)

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
        with self.store.session() as s:
            dep = self._deployment(s, caller, name)
            spec, ref = self.spec_for(dep), dep.backend_ref
        if ref:
            await self.backend.undeploy(ref, spec)
        with self.store.session() as s:
            dep = s.execute(select(m.Deployment).where(m.Deployment.name == name)).scalar_one_or_none()
            if dep is not None:
                s.delete(dep)

    def _deployment(self, s, caller: Principal, name: str) -> m.Deployment:
        caller.require_user()
        dep = s.execute(select(m.Deployment).where(m.Deployment.name == name)).scalar_one_or_none()
        if dep is None or not caller.can_touch(dep.owner):
            raise NotFound(f"No deployment named {name!r}")
        return dep

    async def reconcile_once(self) -> None:
        with self.store.session() as s:
            deps = s.execute(
                select(m.Deployment).where(m.Deployment.status.in_(LIVE), m.Deployment.backend == self.backend.name)
            ).scalars().all()
            work = [(d.id, d.backend_ref, self.spec_for(d), d.status, d.url, d.reason) for d in deps]
        for dep_id, ref, spec, status, url, reason in work:
            if ref is None:
                continue
            try:
                now = await self.backend.deployment_status(ref, spec)
            except Exception:
                log.exception("status of deployment %s", spec.name)
                continue
            if (now.state, now.url, now.reason) != (status, url, reason):
                self._update(dep_id, status=now.state, url=now.url, reason=now.reason)

    def _update(self, dep_id: str, **values: Any) -> None:
        with self.store.session() as s:
            dep = s.get(m.Deployment, dep_id)
            if dep is not None:
                for key, value in values.items():
                    setattr(dep, key, value)
                dep.updated_at = dt.datetime.now(dt.timezone.utc)
