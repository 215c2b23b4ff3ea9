"""The one small async interface every execution backend implements.

The store is the source of truth for what the platform *asked* for; a backend only
knows what is running. The service layer reconciles the two by calling `status`
for every unfinished run (and `deployment_status` for deployments) on a loop and
after any restart, so no run is lost or flipped to a wrong final state because a
watcher died.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:  # scheduling.py imports this module
    from ..builders import BuildContext
    from ..builders.layer import BuildResult
    from ..builders.registry import ImageRef
    from ..config import BuildKitSettings
    from .scheduling import Firing, ScheduleSpec


class RunState(str, enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def final(self) -> bool:
        return self in (RunState.SUCCEEDED, RunState.FAILED, RunState.CANCELLED)


@dataclass(frozen=True)
class Hardware:
    """A hardware size from the platform config, as a backend needs it."""

    name: str
    cpu: float
    memory: str  # Kubernetes quantity, e.g. "2Gi"
    gpus: int = 0
    gpu_type: str | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[dict[str, Any]] = field(default_factory=list)
    nodes: int = 1

    @property
    def memory_bytes(self) -> int:
        return parse_quantity(self.memory)


@dataclass(frozen=True)
class RunSpec:
    """Everything a backend needs to start one run of the runtime.

    `action` is the runtime subcommand: "train" or "batch-predict".
    `run_dir` holds logs.txt, result.json and artifacts/ for this run; for batch
    prediction `source_artifacts` is the training run's artifacts directory.
    `env` is the complete environment the runtime expects (MLP_*); backends add
    nothing but may translate paths (see `mounts`).
    """

    run_id: str
    action: str
    user: str
    model: str
    version: str
    module_path: Path
    run_dir: Path
    hyperparameters: dict[str, Any]
    hardware: Hardware
    image: str | None
    env: dict[str, str]
    inputs: Path | None = None
    outputs: Path | None = None
    source_artifacts: Path | None = None
    timeout_seconds: int | None = None

    @property
    def labels(self) -> dict[str, str]:
        return {
            "mlplatform.run-id": self.run_id,
            "mlplatform.user": self.user,
            "mlplatform.model": self.model,
            "mlplatform.version": self.version,
            "mlplatform.kind": self.action,
        }


@dataclass(frozen=True)
class Autoscale:
    """A HorizontalPodAutoscaler's bounds: replicas between min and max, on average CPU use
    (percent of the requested CPU). Only backends with ``scales_in_place`` support it."""

    min_replicas: int
    max_replicas: int
    target_cpu: int = 70

    def to_json(self) -> dict[str, int]:
        return {"min": self.min_replicas, "max": self.max_replicas, "target_cpu": self.target_cpu}


@dataclass(frozen=True)
class DeploymentSpec:
    deployment_id: str
    name: str
    user: str
    model: str
    version: str
    module_path: Path
    artifacts: Path
    hardware: Hardware
    image: str | None
    env: dict[str, str]
    replicas: int = 1
    deploy_dir: Path | None = None  # logs of the serving processes
    autoscale: Autoscale | None = None  # replicas are then the autoscaler's (see Backend.scales_in_place)
    # Bumped by every change the platform rolls out (deploy, rollback, scale): a backend that
    # replaces its server on a change names the new one with it (the docker backend's container).
    generation: int = 1

    @property
    def labels(self) -> dict[str, str]:
        return {
            "mlplatform.deployment-id": self.deployment_id,
            "mlplatform.deployment": self.name,
            "mlplatform.user": self.user,
            "mlplatform.model": self.model,
            "mlplatform.version": self.version,
        }


@dataclass(frozen=True)
class RunStatus:
    state: RunState
    reason: str | None = None
    exit_code: int | None = None
    # The run's workload (e.g. its Job) does not exist: deleted outside the platform, or, for a run
    # recorded moments ago, not created yet by the replica submitting it.
    missing: bool = False


@dataclass(frozen=True)
class DeploymentStatus:
    state: str  # "deploying", "ready", "failed", "stopped"
    url: str | None = None
    reason: str | None = None


class Backend(abc.ABC):
    """Where runs and deployments execute. Implementations must be restart-safe:
    `status(ref)` answers from the outside world (pid, container, Job), never from
    memory the process may have lost."""

    name: str = "abstract"
    # False: the backend gives a run's workload its own identity (see authenticate_workload), so
    # the platform issues no run token and none is passed in RunSpec.env.
    issues_run_tokens: bool = True

    @property
    def artifacts_on_volume(self) -> bool:
        """Whether runs' artifacts live in the platform's data directory (readable by the API);
        False when they go to object storage."""
        return True

    async def authenticate_workload(self, token: str) -> str | None:
        """The reference (as :meth:`submit` returned it) of the run whose workload presented
        ``token``, a credential the backend gave the run's pods; None if it is not one."""
        return None

    def changed_refs(self) -> set[str] | None:
        """References of the runs whose state may have changed since the last call, for a backend
        that watches (the reconcile loop then reads only those between full passes); None: any
        may have (e.g. nothing is watched, or a watch was rebuilt)."""
        return None

    def check_hardware(self, hardware: Hardware) -> None:
        """Raise :class:`~mlplatform_server.errors.InvalidInput` when this backend can never give
        ``hardware`` (GPUs on a machine without any); called before a run or deployment is recorded.
        Kubernetes checks nothing here: a size no node can hold is reported by the pod's status."""

    # The reason a run pending on this backend has right after submit (recorded with it), so that
    # a watching backend need not reconcile a run only to learn that nothing happened yet.
    initial_reason: str | None = None

    def planned_ref(self, run_id: str, user: str) -> str | None:
        """The reference :meth:`submit` will return for ``run_id`` of ``user``, when it is known
        before the call (it is then recorded with the run in one transaction); None otherwise."""
        return None

    @abc.abstractmethod
    async def submit(self, spec: RunSpec) -> str:
        """Start the run; return an opaque reference stored with the run."""

    @abc.abstractmethod
    async def status(self, ref: str, spec: RunSpec) -> RunStatus:
        """The run's true state now."""

    @abc.abstractmethod
    def logs(self, ref: str, spec: RunSpec, follow: bool = False) -> AsyncIterator[str]:
        """Log text in chunks; with follow, until the run ends."""

    @abc.abstractmethod
    async def cancel(self, ref: str, spec: RunSpec) -> None:
        """Stop the run. Idempotent."""

    @abc.abstractmethod
    async def cleanup(self, ref: str, spec: RunSpec) -> None:
        """After a final state was recorded: keep the logs in run_dir/logs.txt and free resources."""

    @abc.abstractmethod
    async def deploy(self, spec: DeploymentSpec) -> str:
        """Start serving; return a reference."""

    @abc.abstractmethod
    async def deployment_status(self, ref: str, spec: DeploymentSpec) -> DeploymentStatus: ...

    @abc.abstractmethod
    async def undeploy(self, ref: str, spec: DeploymentSpec) -> None:
        """Stop serving. Idempotent."""

    #: True when `scale` changes the replicas of a running deployment in place (0 included) and
    #: `spec.autoscale` is honoured. Otherwise the platform scales by deploying a new server with
    #: `spec.replicas` worker processes and stopping the old one (at least 1, no autoscaling).
    scales_in_place: bool = False

    async def scale(self, ref: str, spec: DeploymentSpec) -> None:
        """Make the running deployment `spec.replicas` replicas, or autoscaled by `spec.autoscale`."""
        raise NotImplementedError(f"the {self.name} backend does not scale in place")

    async def close(self) -> None:
        """Release clients. Runs and deployments keep going."""

    # -- image builds in the cluster (services/builds.py) ---------------------------------
    #: True: `build_image` runs the buildkit builder where the backend runs workloads (Kubernetes: a
    #: BuildKit Job); `auto` then picks it for a requirements.txt. False: only the layer and engine
    #: builders, which run in the platform's own process.
    builds_images: bool = False

    async def build_image(self, ctx: "BuildContext", target: "ImageRef", registry_url: str,
                          auth_file: "Path | str | None", settings: "BuildKitSettings", user: str) -> "BuildResult":
        """Build ``ctx`` for ``user`` and push it to ``target`` (the buildkit builder)."""
        raise NotImplementedError(f"the {self.name} backend does not build images")

    # -- users' credentials (services/credentials.py) -------------------------------------
    #: False: the platform attaches a `CredentialStore` (encrypted in its database) and the backend
    #: puts the values in the environment of each run and deployment it starts (`with_credentials`).
    #: True: the backend keeps them itself and overrides the methods below (Kubernetes: one Secret
    #: per user, referenced by envFrom, so no value is ever in a pod spec).
    keeps_credentials: bool = False
    credential_store: "CredentialStore | None" = None

    def _credential_store(self) -> "CredentialStore":
        if self.credential_store is None:
            from ..errors import BackendError

            raise BackendError(f"the {self.name} backend has no credential store")
        return self.credential_store

    async def put_credential(self, user: str, key: str, value: str) -> dt.datetime | None:
        """Create or replace one credential of ``user``; the time it was written."""
        return self._credential_store().put(user, key, value)

    async def delete_credential(self, user: str, key: str) -> bool:
        """Remove one credential; False when ``user`` had none named ``key``."""
        return self._credential_store().delete(user, key)

    async def credential_keys(self, user: str) -> dict[str, dt.datetime | None]:
        """Names of ``user``'s credentials → when each was last written (never the values)."""
        return self._credential_store().keys(user)

    async def credential_env(self, user: str) -> dict[str, str]:
        """Values to put in the environment of ``user``'s runs and deployments ({} where the backend
        references them instead)."""
        return self.credential_store.values(user) if self.credential_store is not None else {}

    async def with_credentials(self, spec: SpecT) -> SpecT:
        """``spec`` with its user's credentials added to ``env``; the platform's own variables win."""
        extra = await self.credential_env(spec.user)
        return dataclasses.replace(spec, env={**extra, **spec.env}) if extra else spec

    # -- scheduled batch prediction (services/schedules.py, backends/scheduling.py) -------
    #: True: the backend fires schedules itself (Kubernetes: a CronJob) and reports each firing
    #: through `schedule_firings`; the platform records a run for each. False: the platform's own
    #: scheduler submits an ordinary batch-prediction run at each due time.
    fires_schedules: bool = False

    async def create_schedule(self, spec: "ScheduleSpec") -> str:
        """Start firing ``spec`` (suspended if ``spec.suspended``); return a reference."""
        raise NotImplementedError(f"the {self.name} backend does not fire schedules")

    async def suspend_schedule(self, ref: str, suspended: bool) -> None:
        """Stop (True) or restart (False) firing. Idempotent."""
        raise NotImplementedError(f"the {self.name} backend does not fire schedules")

    async def delete_schedule(self, ref: str) -> None:
        """Stop firing for good, and stop the firings still running. Idempotent."""
        raise NotImplementedError(f"the {self.name} backend does not fire schedules")

    async def schedule_firings(self, refs: "Collection[str]" = ()) -> "list[Firing]":
        """Every firing of every schedule the backend still knows of (recorded or not). ``refs``:
        the references of the platform's schedules (where a backend that keeps them apart looks)."""
        return []


class CredentialStore(Protocol):
    """Where a backend without its own keeps users' credentials (store/credentials.py)."""

    def put(self, user: str, key: str, value: str) -> dt.datetime: ...
    def delete(self, user: str, key: str) -> bool: ...
    def keys(self, user: str) -> dict[str, dt.datetime | None]: ...
    def values(self, user: str) -> dict[str, str]: ...


SpecT = TypeVar("SpecT", RunSpec, DeploymentSpec)


_SUFFIXES = {
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
    "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
}


def parse_quantity(text: str) -> int:
    """A Kubernetes memory quantity ("512Mi", "2G", "1000") in bytes."""
    value = str(text).strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if value.endswith(suffix):
            number = value[: -len(suffix)]
            try:
                return int(float(number) * _SUFFIXES[suffix])
            except ValueError:
                break
    try:
        return int(float(value))
    except ValueError:
        raise ValueError(f"not a memory quantity: {text!r} (expected e.g. 512Mi, 2Gi)") from None
