"""The service layer, wired: every interface (REST, CLI through REST, Lab) calls into this."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path

from ..backends.base import Backend
from ..config import PlatformConfig
from ..hub.service_auth import HubTokenAuthenticator
from ..store.credentials import KEY_FILE, CredentialVault
from ..store.db import Store
from .artifacts import ArtifactService
from .auth import AuthService
from .builds import BuildService
from .credentials import CredentialService
from .deployments import DeploymentService
from .models import ModelService
from .runs import RunService
from .schedules import ScheduleService

log = logging.getLogger("mlplatform")


@dataclass
class PlatformSettings:
    data_dir: Path
    db_url: str
    api_url: str
    admin_token: str
    reconcile_interval: float = 0.5


class Platform:
    def __init__(self, settings: PlatformSettings, store: Store, backend: Backend, config: PlatformConfig) -> None:
        self.settings = settings
        self.store = store
        self.backend = backend
        self.config = config
        data_dir = Path(settings.data_dir)
        self.auth = AuthService(store, settings.admin_token, workload=self._workload_run,
                                hub=HubTokenAuthenticator.from_env())  # run as a JupyterHub service
        self.models = ModelService(store, data_dir)
        self.runs = RunService(store, backend, config, self.models, data_dir, settings.api_url)
        self.artifacts = ArtifactService(self.runs, backend)
        self.deployments = DeploymentService(store, backend, config, self.models, self.runs, data_dir)
        self.builds = BuildService(store, config, self.models, data_dir, backend=backend)
        if not backend.keeps_credentials:  # one machine: encrypted in the DB, key file in the data dir
            backend.credential_store = CredentialVault(store, data_dir / KEY_FILE)
        self.credentials = CredentialService(store, backend)
        self.schedules = ScheduleService(store, backend, config, self.models, self.runs)
        self._loop_task: asyncio.Task | None = None
        self.leading = False  # runs the background loop (one server of those sharing the database)

    async def _workload_run(self, token: str) -> tuple[str, str] | None:
        ref = await self.backend.authenticate_workload(token)
        return (self.backend.name, ref) if ref is not None else None

    async def reconcile_once(self) -> None:
        try:  # fire what is due (or record the CronJobs' firings) first: then their runs are tracked
            await self.schedules.reconcile_once()
        except Exception:
            log.exception("scheduling pass failed; retrying")
        await self.runs.reconcile_once()
        await self.deployments.reconcile_once()

    def start(self) -> None:
        """Start reconciling (first pass at once: a restart learns every true state)."""
        if self._loop_task is None:
            self._lead()  # so that /health says the role from the first request on
            self._loop_task = asyncio.get_running_loop().create_task(self._reconcile_forever())

    def _lead(self) -> bool:
        """Whether this server runs the background loop now. Several servers on one database: one
        leads, the others stand by and take over when it is gone (store/coordination.py)."""
        leading = self.store.coordination.is_leader()
        if leading and not self.leading:
            log.info("leading: this server now runs the background loop")
            self.runs.forget_changes()  # what it saw change while standing by: a full pass first
        elif self.leading and not leading:
            log.warning("no longer leading: another server runs the background loop")
        self.leading = leading
        return leading

    async def _reconcile_forever(self) -> None:
        while True:
            try:
                if self._lead():
                    await self.reconcile_once()
                else:
                    self.backend.changed_refs()  # standing by: the leader follows them
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("reconciliation pass failed; retrying")
            await asyncio.sleep(self.settings.reconcile_interval)

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            try:
                await self._loop_task
            except asyncio.CancelledError:
                pass
            self._loop_task = None
        await self.backend.close()
        self.store.close()
