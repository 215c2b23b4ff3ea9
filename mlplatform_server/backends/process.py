"""The process backend: each run is a subprocess of the runtime in this Python environment;
a deployment is a serving process on a free port.

Processes run in their own session, so they outlive a crash of the server. The
reference stored with a run is ``pid:starttime`` (from /proc, so a reused pid is
never mistaken for the run). The true final state is the runtime's result file;
a process that vanished without one failed.

GPUs: a size with ``gpus: N`` gets N of this machine's GPUs (``nvidia-smi -L``) through
``CUDA_VISIBLE_DEVICES`` (by UUID), the least used first, so two one-GPU runs on a two-GPU machine
get one each; a size without GPUs sees none (``CUDA_VISIBLE_DEVICES=""``), as in a container or a
pod. Nothing is queued: when every GPU is in use, GPUs are shared (after a server restart the
platform no longer knows which GPUs its running processes hold). A size asking for more GPUs than
the machine has is refused before anything is recorded. A training run on a size with several
GPUs also gets torchrun's rendezvous environment on 127.0.0.1 (runtime/distributed.py: one
process per GPU); a size with several nodes is refused.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from collections import Counter
from pathlib import Path

from ..errors import InvalidInput
from ..gpus import machine_gpus, shortage
from .base import Backend, DeploymentSpec, DeploymentStatus, Hardware, RunSpec, RunState, RunStatus
from .common import free_port, ping, read_result, refuse_several_nodes, rendezvous_env

# Never hand the platform's own credentials to user code.
_PRIVATE_ENV = ("MLP_TOKEN", "MLP_ADMIN_TOKEN", "MLP_DB_URL", "MLP_TEST_PG_URL")


def _start_time(pid: int) -> str | None:
    """The process start time in clock ticks, or None when it is gone (or a zombie)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return fields[19]


def _parse_ref(ref: str) -> tuple[int, str, int | None]:
    parts = ref.split(":")
    return int(parts[0]), parts[1], int(parts[2]) if len(parts) > 2 else None


def _alive(ref: str) -> bool:
    pid, started, _ = _parse_ref(ref)
    return _start_time(pid) == started


class ProcessBackend(Backend):
    name = "process"

    def __init__(self, python: str | None = None, host: str = "127.0.0.1", stop_grace: float = 10.0) -> None:
        self.python = python or sys.executable
        self.host = host
        self.stop_grace = stop_grace
        self._children: dict[int, subprocess.Popen] = {}
        self._gpu_holders: dict[str, tuple[str, ...]] = {}  # reference → UUIDs of the GPUs it was given

    # -- helpers -------------------------------------------------------------
    def _environ(self, extra: dict[str, str]) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _PRIVATE_ENV}
        env.update(extra)
        env["PYTHONUNBUFFERED"] = "1"
        package_root = str(Path(__file__).resolve().parents[2])
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
        return env

    def check_hardware(self, hardware: Hardware) -> None:
        refuse_several_nodes(hardware, self.name)
        why = shortage(hardware.name, hardware.gpus, len(machine_gpus()))
        if why:
            raise InvalidInput(why)

    def _assign_gpus(self, hardware: Hardware) -> tuple[str, ...]:
        """The UUIDs of the ``hardware.gpus`` least used GPUs (lowest index first among equals)."""
        if hardware.gpus <= 0:
            return ()
        self.check_hardware(hardware)
        self._gpu_holders = {ref: held for ref, held in self._gpu_holders.items() if _alive(ref)}
        in_use = Counter(uuid for held in self._gpu_holders.values() for uuid in held)
        ranked = sorted(machine_gpus(), key=lambda gpu: (in_use[gpu.uuid], gpu.index))
        return tuple(gpu.uuid for gpu in ranked[: hardware.gpus])

    def _spawn_on(self, hardware: Hardware, args: list[str], env: dict[str, str], log_path: Path, cwd: Path,
                  rendezvous: bool = False) -> str:
        """:meth:`_spawn` with ``hardware``'s GPUs, and only those, visible to the process;
        ``rendezvous``: with torchrun's environment when the size has several GPUs (a training run)."""
        gpus = self._assign_gpus(hardware)
        env = {**env, "CUDA_VISIBLE_DEVICES": ",".join(gpus)}
        if rendezvous:
            env.update(rendezvous_env(hardware, "127.0.0.1"))
        ref = self._spawn(args, env, log_path, cwd)
        if gpus:
            self._gpu_holders[ref] = gpus
        return ref

    def _spawn(self, args: list[str], env: dict[str, str], log_path: Path, cwd: Path) -> str:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                [self.python, "-m", "mlplatform_server.runtime", *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._environ(env),
                cwd=cwd,
                start_new_session=True,
            )
        self._children[proc.pid] = proc
        started = _start_time(proc.pid)
        if started is None:  # exited at once; poll() reaps it
            proc.poll()
            started = "0"
        return f"{proc.pid}:{started}"

    def _reap(self, pid: int) -> int | None:
        proc = self._children.get(pid)
        return proc.poll() if proc is not None else None

    async def _terminate(self, ref: str) -> None:
        pid, _, _ = _parse_ref(ref)
        if not _alive(ref):
            self._reap(pid)
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.stop_grace
        while loop.time() < deadline:
            self._reap(pid)
            if not _alive(ref):
                return
            await asyncio.sleep(0.1)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self._reap(pid)

    # -- runs ----------------------------------------------------------------
    async def submit(self, spec: RunSpec) -> str:
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        if spec.outputs is not None:
            spec.outputs.parent.mkdir(parents=True, exist_ok=True)
        env = (await self.with_credentials(spec)).env  # the user's credentials as environment variables
        return self._spawn_on(spec.hardware, [spec.action], env, spec.run_dir / "logs.txt", spec.run_dir,
                              rendezvous=True)

    async def status(self, ref: str, spec: RunSpec) -> RunStatus:
        pid, _, _ = _parse_ref(ref)
        exit_code = self._reap(pid)
        result = read_result(spec.run_dir / "result.json")
        if result is not None and (exit_code is not None or not _alive(ref)):
            return result
        if _alive(ref):
            return RunStatus(RunState.RUNNING)
        if result is not None:
            return result
        if exit_code is not None and exit_code < 0:
            reason = f"the run's process was killed by {signal.Signals(-exit_code).name}"
        elif exit_code is not None:
            reason = f"the run's process exited with code {exit_code} without reporting a result"
        else:
            reason = "the run's process ended without reporting a result (killed or lost while the server was down)"
        return RunStatus(RunState.FAILED, reason, exit_code)

    async def logs(self, ref: str, spec: RunSpec, follow: bool = False) -> AsyncIterator[str]:
        path = spec.run_dir / "logs.txt"
        position = 0
        while True:
            if path.exists():
                with open(path, "rb") as fh:
                    fh.seek(position)
                    chunk = fh.read()
                if chunk:
                    position += len(chunk)
                    yield chunk.decode(errors="replace")
                    continue
            if not follow or (await self.status(ref, spec)).state.final:
                if path.exists() and path.stat().st_size > position:
                    continue
                return
            await asyncio.sleep(0.2)

    async def cancel(self, ref: str, spec: RunSpec) -> None:
        await self._terminate(ref)

    async def cleanup(self, ref: str, spec: RunSpec) -> None:
        self._reap(_parse_ref(ref)[0])  # the log already lives in run_dir/logs.txt

    # -- deployments ---------------------------------------------------------
    async def deploy(self, spec: DeploymentSpec) -> str:
        spec = await self.with_credentials(spec)  # the user's credentials as environment variables
        port = free_port()
        deploy_dir = spec.deploy_dir or spec.artifacts.parent
        deploy_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **spec.env,
            "MLP_PORT": str(port),
            "MLP_HOST": self.host,
            "MLP_WORKERS": str(spec.replicas),
        }
        ref = self._spawn_on(spec.hardware, ["serve"], env, deploy_dir / "logs.txt", deploy_dir)
        return f"{ref}:{port}"

    async def deployment_status(self, ref: str, spec: DeploymentSpec) -> DeploymentStatus:
        pid, _, port = _parse_ref(ref)
        url = f"http://{self.host}:{port}"
        exit_code = self._reap(pid)
        if not _alive(ref):
            tail = _log_tail((spec.deploy_dir or spec.artifacts.parent) / "logs.txt")
            code = f" (exit code {exit_code})" if exit_code is not None else ""
            return DeploymentStatus("failed", None, f"the serving process stopped{code}: {tail}")
        ready = await asyncio.get_running_loop().run_in_executor(None, ping, url)
        return DeploymentStatus("ready" if ready else "deploying", url)

    async def undeploy(self, ref: str, spec: DeploymentSpec) -> None:
        await self._terminate(ref)


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "no log"
    return " | ".join(text[-lines:]) or "no output"
