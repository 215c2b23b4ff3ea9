"""The one small async interface every execution backend implements.

The store is the source of truth for what the platform *asked* for; a backend only
knows what is running. The service layer reconciles the two by calling `status`
for every unfinished run (and `deployment_status` for deployments) on a loop and
after any restart, so no run is lost or flipped to a wrong final state because a
watcher died.
"""

from __future__ import annotations

import abc
import enum
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


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

    async def close(self) -> None:
        """Release clients. Runs and deployments keep going."""


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
