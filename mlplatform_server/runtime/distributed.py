"""Distributed training: one ``Model.train`` per GPU and node, started as torchrun starts them.

A backend gives a run whose hardware size has several GPUs or several nodes the rendezvous
environment (``NNODES``, ``NPROC_PER_NODE``, ``NODE_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``,
``WORLD_SIZE``; :func:`mlplatform_server.backends.common.rendezvous_env`). The runtime's ``train``
is then this node's agent: it starts ``NPROC_PER_NODE`` workers, each this runtime's ``train``
with what torchrun's static rendezvous gives a worker (``RANK``, ``LOCAL_RANK``, ``WORLD_SIZE``,
``LOCAL_WORLD_SIZE``, ``GROUP_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``), so ``Model.train`` calls
``torch.distributed.init_process_group()`` as in any torchrun script. The agent is ours, not
``torch.distributed.run``: the torchrun of PyTorch 1.13 (Debian's, in the deep-learning image)
fails at start on Python 3.11 (its ``Std`` flag parsing), and nothing of elastic training
(restarts, membership changes) is used. When one worker fails the agent stops the others.

Only rank 0 reports metrics (the others' are dropped, as Lightning's ``rank_zero_only`` does);
saving artifacts from rank 0 only is the model's job. Each worker writes its outcome to
``result.rank<R>.json`` beside the run's result file; the agent writes the run's result:
succeeded when every worker did, else the first failed rank's reason.
"""

from __future__ import annotations

import importlib.util
import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, BinaryIO
from pathlib import Path

from ..errors import PlatformError
from .context import ENV_VARS

RENDEZVOUS_VARS = ("NNODES", "NPROC_PER_NODE", "NODE_RANK", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE")


class DistributedSetupError(PlatformError):
    """The run asks for distributed training that this environment cannot start."""

    status = 400
    code = "distributed_setup"


def is_worker(env: Mapping[str, str]) -> bool:
    """Whether this process is one of torchrun's workers (not the node's agent)."""
    return "LOCAL_RANK" in env and "RANK" in env


def rank(env: Mapping[str, str]) -> int:
    return _int(env, "RANK", 0)


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name) or ""
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise DistributedSetupError(f"{name}={raw!r} is not a whole number") from None
    if value < 0:
        raise DistributedSetupError(f"{name}={raw!r} is negative")
    return value


@dataclass(frozen=True)
class WorkerPlan:
    """This node's share of a distributed run."""

    nnodes: int
    nproc_per_node: int
    node_rank: int
    master_addr: str
    master_port: int

    @property
    def world_size(self) -> int:
        return self.nnodes * self.nproc_per_node

    def worker_env(self, local_rank: int) -> dict[str, str]:
        """What torchrun gives each worker (static rendezvous), for ``init_process_group("env://")``."""
        return {
            "RANK": str(self.node_rank * self.nproc_per_node + local_rank),
            "LOCAL_RANK": str(local_rank),
            "WORLD_SIZE": str(self.world_size),
            "LOCAL_WORLD_SIZE": str(self.nproc_per_node),
            "GROUP_RANK": str(self.node_rank),
            "MASTER_ADDR": self.master_addr,
            "MASTER_PORT": str(self.master_port),
        }

    def describe(self) -> str:
        return (f"nnodes={self.nnodes} nproc_per_node={self.nproc_per_node} node_rank={self.node_rank} "
                f"master={self.master_addr}:{self.master_port}")


def worker_plan(env: Mapping[str, str]) -> WorkerPlan | None:
    """This node's plan, or None when the run is one process in all or this process is a worker."""
    if is_worker(env):
        return None
    nnodes, nproc = _int(env, "NNODES", 1), _int(env, "NPROC_PER_NODE", 1)
    if nnodes * nproc <= 1:
        return None
    missing = [name for name in ("MASTER_ADDR", "MASTER_PORT") if not env.get(name)]
    if missing:
        raise DistributedSetupError(f"distributed training ({nnodes} node(s) × {nproc} process(es)) needs "
                                    f"{' and '.join(missing)} in the environment")
    node_rank = _int(env, "NODE_RANK", 0)
    if node_rank >= nnodes:
        raise DistributedSetupError(f"NODE_RANK={node_rank} is not below NNODES={nnodes}")
    return WorkerPlan(nnodes, nproc, node_rank, env["MASTER_ADDR"], _int(env, "MASTER_PORT", 0))


def require_torch(plan: WorkerPlan) -> None:
    """Several copies of a model without PyTorch would each train alone: refuse them."""
    if importlib.util.find_spec("torch") is None:
        raise DistributedSetupError(
            f"the hardware size asks for distributed training ({plan.nnodes} node(s) × {plan.nproc_per_node} "
            "process(es)), which needs PyTorch in the environment: pick an environment with PyTorch "
            "(deep-learning, gpu) or a size with one GPU")


def worker_result_path(result_path: Path, worker_rank: int) -> Path:
    return result_path.with_name(f"{result_path.stem}.rank{worker_rank}{result_path.suffix}")


def first_failure(result_path: Path, env: Mapping[str, str]) -> str | None:
    """``"rank R: <reason>"`` of the rank that failed first (the cause; the others usually fail
    because it left, e.g. "Connection closed by peer"), or None when no rank wrote a failure."""
    world = _int(env, "NNODES", 1) * _int(env, "NPROC_PER_NODE", 1)
    failures = []
    for worker_rank in range(world):
        try:
            result = json.loads(worker_result_path(result_path, worker_rank).read_text())
        except (OSError, ValueError):
            continue
        if result.get("status") == "failed":
            failures.append((result.get("finished_at") or "", worker_rank, result.get("reason") or "failed"))
    if not failures:
        return None
    _, worker_rank, reason = min(failures)
    return f"rank {worker_rank}: {reason}"


class WorkersFailed(Exception):
    """A distributed run's workers failed (torchrun exited non-zero)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def with_flags(env: Mapping[str, str], flags: Mapping[str, Any] | None) -> dict[str, str]:
    """``env`` with the command line's options as their MLP_* variables (for the workers)."""
    merged = dict(env)
    for name, value in (flags or {}).items():
        if value not in (None, "") and name in ENV_VARS:
            merged[ENV_VARS[name]] = str(value)
    return merged


def run_workers(plan: WorkerPlan, env: Mapping[str, str], result_path: Path | None) -> None:
    """Run this node's workers (their output becomes this process's, a whole line at a time: see
    :func:`forward_lines`); WorkersFailed when one fails, after the others are stopped. A SIGTERM
    here stops them all."""
    print(f"MLP_DISTRIBUTED {plan.describe()}", flush=True)
    workers = [subprocess.Popen([sys.executable, "-m", "mlplatform_server.runtime", "train"],
                                env={**env, **plan.worker_env(local_rank)},
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
               for local_rank in range(plan.nproc_per_node)]
    lock = threading.Lock()
    forwarders = [threading.Thread(target=forward_lines, args=(stream, sink, lock), daemon=True)
                  for worker in workers
                  for stream, sink in ((worker.stdout, sys.stdout.buffer), (worker.stderr, sys.stderr.buffer))]
    for forwarder in forwarders:
        forwarder.start()
    try:
        try:
            code = _first_failure_code(workers)
        except BaseException:  # _Terminated or SIGINT
            _stop_workers(workers)
            raise
        if code is not None:
            _stop_workers(workers)
            failed = first_failure(result_path, env) if result_path is not None else None
            raise WorkersFailed(failed or f"a worker exited with code {code}")
    finally:
        for forwarder in forwarders:  # bounded: a worker's own child may hold its pipe open
            forwarder.join(timeout=5)


def forward_lines(stream: BinaryIO, sink: BinaryIO, lock: threading.Lock) -> None:
    """Copy a worker's output to ``sink`` one whole line per write. Workers print unbuffered
    (PYTHONUNBUFFERED), so ``print`` writes a line and its newline separately; sharing one output,
    another worker's line — rank 0's ``MLP_METRIC`` line — could land between the two and no longer
    start a line (a metric lost; seen in CI)."""
    with stream:
        for line in iter(stream.readline, b""):
            with lock:
                sink.write(line)
                sink.flush()


def _first_failure_code(workers: list[subprocess.Popen]) -> int | None:
    """Wait until every worker succeeded (None) or one failed (its exit code)."""
    running = list(workers)
    while running:
        for worker in list(running):
            code = worker.poll()
            if code is None:
                continue
            running.remove(worker)
            if code != 0:
                return code
        time.sleep(0.1)
    return None


def _stop_workers(workers: list[subprocess.Popen], grace: float = 10.0) -> None:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for worker in workers:
        try:
            worker.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()
