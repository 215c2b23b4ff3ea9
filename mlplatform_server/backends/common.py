"""Helpers every backend shares: the runtime's result file, run files, a free port, a /ping probe,
the rendezvous environment of a distributed run."""

from __future__ import annotations

import json
import socket
import urllib.request
from pathlib import Path

from ..errors import InvalidInput
from .base import Hardware, RunState, RunStatus


def refuse_several_nodes(hardware: Hardware, backend: str) -> None:
    """One machine cannot give a size that spans several nodes."""
    if hardware.nodes > 1:
        raise InvalidInput(f"hardware size {hardware.name} spans {hardware.nodes} nodes, but the {backend} "
                           "backend runs on one machine: multi-node training needs the kubernetes backend")


def rendezvous_env(hardware: Hardware, master_addr: str, master_port: int | None = None) -> dict[str, str]:
    """The torchrun rendezvous environment of a run on ``hardware`` (one process per GPU, at least
    one per node; see runtime/distributed.py), without ``NODE_RANK`` when it spans several nodes
    (each node's own); empty when the run is one process. ``master_port`` None: a free port here."""
    per_node = max(hardware.gpus, 1)
    nodes = max(hardware.nodes, 1)
    if nodes * per_node <= 1:
        return {}
    port = free_port() if master_port is None else master_port
    env = {"MASTER_ADDR": master_addr, "MASTER_PORT": str(port), "WORLD_SIZE": str(nodes * per_node),
           "NNODES": str(nodes), "NPROC_PER_NODE": str(per_node)}
    if nodes == 1:
        env["NODE_RANK"] = "0"
    return env


def read_result(path: Path) -> RunStatus | None:
    """The final state the runtime wrote (MLP_RESULT_PATH), or None when there is none yet."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    state = RunState.SUCCEEDED if data.get("status") == "succeeded" else RunState.FAILED
    return RunStatus(state, data.get("reason"))


def read_text(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return ""


def append_text(path: Path, text: str) -> None:
    """Add to a run's kept log; a log that cannot be written never fails the caller."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as fh:
            fh.write(text)
    except OSError:
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def ping(url: str) -> bool:
    """True when a serving process answers GET /ping with 200."""
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False
