"""The docker backend: each run is one container of the runtime, a deployment one serving container,
through the Docker Engine API — Docker itself or Podman's Docker-compatible service.

Semantics mirror the process backend: the reference stored with a run is the container id, the
run's state is read from the engine (`inspect`) every time, and the runtime's result file
(``run_dir/result.json``) is the truth about how a finished run ended. Containers are never
auto-removed, so the exit code, the OOM flag and the logs survive a crash of the run (or of the
server); `cleanup` copies the log to ``run_dir/logs.txt`` and only then removes the container.

Layout inside a container (the model's code is bind-mounted, unless the image is the version's
model image from ``mlp build``, labelled with its model, version and content hash: then the code and the
notebook folder's files are in the image at the same path, and nothing is mounted over them):

- ``/mlp/code``  ← ``spec.module_path.parent``, read-only
- ``/mlp/run``   ← ``spec.run_dir`` (result.json, artifacts/), read-write; the working directory
- ``/mlp/artifacts`` ← batch-predict: ``spec.source_artifacts``; deployments: ``spec.artifacts``;
  read-only
- ``/mlp/input/<basename>`` ← batch-predict: ``spec.inputs`` (file or directory), read-only
- ``/mlp/output`` ← batch-predict: ``spec.outputs.parent`` (created), read-write

Host paths in ``MLP_MODULE_PATH``, ``MLP_ARTIFACTS``, ``MLP_RESULT_PATH``, ``MLP_INPUTS`` and
``MLP_OUTPUTS`` are translated to these container paths; every other variable is passed as is.

Decisions:

- Containers run as root (``user="0:0"``), whatever the image says: the bind-mounted run and
  output directories belong to the platform's user on the host and must stay writable, and
  files the run writes there must be removable by the platform. (Rootless Podman maps container
  root to the calling user, which gives the same result.)
- ``network_mode="host"`` by default, so ``MLP_URL=http://127.0.0.1:PORT`` reaches the platform
  API and a deployment's port is the host's. With another network mode pass ``api_host`` (e.g.
  ``host.containers.internal``): it replaces the host of ``MLP_URL``, and a deployment's port is
  published on the host's loopback.
- Resources: ``nano_cpus = cpu * 1e9`` and ``mem_limit = memory`` (swap capped at the same value,
  so the limit is really the limit). Checked on rootful Podman 4.3 with runc on hybrid (v1)
  cgroups: both are accepted and applied (``HostConfig.NanoCpus``/``Memory``, and the cgroup's
  ``memory.limit_in_bytes``, ``cpu.cfs_quota_us``). Limits are never dropped: if an engine stores
  a limit as 0 instead (rootless Podman on cgroup v1 ignores them), a warning log line says so.
- Out of memory: an OOM kill is exit code 137. Docker sets ``State.OOMKilled``; Podman 4.3 on
  cgroup v1 does not (and emits no ``oom`` event), so for a 137 without a result file the kernel
  log (/dev/kmsg) is searched for an OOM kill in the container's cgroup; when neither tells, the
  reason is "killed (out of memory or SIGKILL)".
- GPUs: ``hardware.gpus > 0`` adds a ``DeviceRequest`` for that many GPUs only if the engine
  reports an ``nvidia`` runtime or the host has ``/dev/nvidiactl``; otherwise the submit fails
  with a clear error instead of running on CPUs.
- Deployments run with restart policy ``unless-stopped``; their ref is ``<container id>:<port>``.
- The SDK is blocking, so every call runs in a thread (``asyncio.to_thread``). Following logs
  streams in a thread and hands chunks over through an ``asyncio.Queue``.
"""

from __future__ import annotations

import asyncio
import codecs
import logging
import os
import signal
import threading
import time
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path, PurePosixPath
from typing import Any

import docker
import docker.errors
import docker.types

from ..builders.context import CONTENT_HASH_LABEL, MODEL_LABEL, VERSION_LABEL
from ..errors import BackendError, InvalidInput
from .base import Backend, DeploymentSpec, DeploymentStatus, Hardware, RunSpec, RunState, RunStatus
from .common import append_text, free_port, ping, read_result, read_text, refuse_several_nodes, rendezvous_env

log = logging.getLogger(__name__)

CODE_DIR = PurePosixPath("/mlp/code")
RUN_DIR = PurePosixPath("/mlp/run")
ARTIFACTS_DIR = PurePosixPath("/mlp/artifacts")
INPUT_DIR = PurePosixPath("/mlp/input")
OUTPUT_DIR = PurePosixPath("/mlp/output")
RESULT_DIR = PurePosixPath("/mlp/result")

MANAGED_LABEL = "mlplatform.managed"
# A serving container restarted this often and still not answering is crash-looping.
CRASH_LOOP_RESTARTS = 3
# Never hand the platform's own credentials to user code.
_PRIVATE_ENV = ("MLP_TOKEN", "MLP_ADMIN_TOKEN", "MLP_DB_URL", "MLP_TEST_PG_URL")
_PATH_ENV = ("MLP_MODULE_PATH", "MLP_ARTIFACTS", "MLP_RESULT_PATH", "MLP_INPUTS", "MLP_OUTPUTS")

_PENDING_STATES = {"created", "configured", "initialized"}
_RUNNING_STATES = {"running", "paused", "restarting", "stopping"}


class _Mounts:
    """Bind mounts of one container, and the translation of host paths to container paths."""

    def __init__(self) -> None:
        self._binds: list[tuple[Path, PurePosixPath, bool]] = []  # host, container, read_only

    def add(self, host: Path, container: PurePosixPath, read_only: bool) -> None:
        self._binds.append((Path(os.path.abspath(host)), container, read_only))

    def covers(self, host: Path) -> bool:
        return self.translate(str(host)) != str(host)

    def translate(self, value: str) -> str:
        path = Path(os.path.abspath(value))
        # The most specific mount wins (e.g. run_dir/artifacts mounted apart from run_dir).
        for host, container, _ in sorted(self._binds, key=lambda b: len(b[0].parts), reverse=True):
            if path == host:
                return str(container)
            if path.is_relative_to(host):
                return str(container.joinpath(*path.relative_to(host).parts))
        return value

    def docker_mounts(self) -> list[docker.types.Mount]:
        return [
            docker.types.Mount(str(container), str(host), type="bind", read_only=read_only)
            for host, container, read_only in self._binds
        ]


def _tail(text: str, lines: int = 3) -> str:
    return " | ".join(text.strip().splitlines()[-lines:]) or "no output"


def _is_not_found(exc: Exception) -> bool:
    return isinstance(exc, docker.errors.NotFound) or (
        isinstance(exc, docker.errors.APIError) and exc.status_code == 404
    )


class DockerBackend(Backend):
    name = "docker"

    def __init__(
        self,
        base_url: str | None = None,
        network_mode: str = "host",
        stop_grace: float = 10.0,
        api_host: str | None = None,
    ) -> None:
        self.base_url = base_url
        self.network_mode = network_mode
        self.stop_grace = stop_grace
        self.api_host = api_host
        self.client = docker.DockerClient(base_url=base_url) if base_url else docker.from_env()
        self._gpu_runtime: bool | None = None

    # -- helpers -------------------------------------------------------------
    async def _call(self, fn, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def _inspect(self, container_id: str) -> dict[str, Any] | None:
        return await self._call(self._inspect_sync, container_id)

    def _has_gpus(self) -> bool:
        if self._gpu_runtime is None:
            try:
                runtimes = self.client.info().get("Runtimes") or {}
            except docker.errors.APIError:
                runtimes = {}
            self._gpu_runtime = any("nvidia" in name for name in runtimes)
        return self._gpu_runtime or os.path.exists("/dev/nvidiactl")

    def check_hardware(self, hardware: Hardware) -> None:
        refuse_several_nodes(hardware, self.name)
        if hardware.gpus > 0 and not self._has_gpus():
            raise InvalidInput(_no_gpu_message(hardware))

    def _resources(self, hardware: Hardware) -> dict[str, Any]:
        resources: dict[str, Any] = {}
        if hardware.cpu and hardware.cpu > 0:
            resources["nano_cpus"] = int(hardware.cpu * 1e9)
        if hardware.memory:
            resources["mem_limit"] = hardware.memory_bytes
            resources["memswap_limit"] = hardware.memory_bytes
        if hardware.gpus > 0:
            if not self._has_gpus():
                raise BackendError(_no_gpu_message(hardware))
            resources["device_requests"] = [
                docker.types.DeviceRequest(count=hardware.gpus, capabilities=[["gpu"]])
            ]
        return resources

    def _environment(self, env: dict[str, str], mounts: _Mounts, code_in_image: bool) -> dict[str, str]:
        out = {k: v for k, v in env.items() if k not in _PRIVATE_ENV}
        for key in _PATH_ENV:
            if out.get(key):
                out[key] = mounts.translate(out[key])
        if code_in_image:  # the model image's own copy (nothing is mounted over it)
            out["MLP_MODULE_PATH"] = str(CODE_DIR / "model.py")
        if self.api_host and out.get("MLP_URL"):
            parts = urllib.parse.urlsplit(out["MLP_URL"])
            netloc = self.api_host + (f":{parts.port}" if parts.port else "")
            out["MLP_URL"] = urllib.parse.urlunsplit(parts._replace(netloc=netloc))
        out["PYTHONUNBUFFERED"] = "1"
        return out

    def _require_image(self, image: str | None, what: str) -> str:
        if not image:
            raise BackendError(
                f"The docker backend runs {what} in a container image, but none was given: "
                "choose an environment (or containerize the model) first"
            )
        return image

    def _create(self, name: str, labels: dict[str, str], options: dict[str, Any]) -> Any:
        container = self._create_pulling(dict(options, name=name, labels=labels, detach=True))
        # An engine that cannot apply a limit may store it as 0 and go on (rootless Podman on
        # cgroup v1 does): say so rather than let a run believe it is limited.
        host_config = container.attrs.get("HostConfig") or {}
        for option, field, what in (("mem_limit", "Memory", "memory"), ("nano_cpus", "NanoCpus", "CPU")):
            if options.get(option) and not host_config.get(field):
                log.warning("container %s: the container engine did not apply the %s limit (%s); "
                            "it runs without one", name, what, options[option])
        return container

    def _create_pulling(self, kwargs: dict[str, Any]) -> Any:
        try:
            return self.client.containers.create(**kwargs)
        except docker.errors.ImageNotFound:
            image = kwargs["image"]
            try:
                self.client.images.pull(image)
            except docker.errors.APIError as exc:
                raise BackendError(
                    f"Image {image!r} is not on the container engine and could not be pulled: {_explanation(exc)}"
                ) from None
            return self.client.containers.create(**kwargs)

    def _create_and_start(self, name: str, labels: dict[str, str], options: dict[str, Any]) -> Any:
        try:
            container = self._create(name, labels, options)
        except docker.errors.APIError as exc:
            # The name is taken: a retried submit, or a leftover. Docker answers 409; Podman 4.3
            # answers 500 "... is already in use".
            if exc.status_code == 409 or "already in use" in _explanation(exc):
                return self._existing(name, labels)
            raise BackendError(f"could not create container {name}: {_explanation(exc)}") from None
        try:
            container.start()
        except docker.errors.APIError as exc:
            try:
                container.remove(force=True)
            except docker.errors.APIError:
                pass
            raise BackendError(f"could not start container {name}: {_explanation(exc)}") from None
        return container

    def _existing(self, name: str, labels: dict[str, str]) -> Any:
        """The container that already has `name`: ours for the same run/deployment is reused
        (a submit retried after a crash must not start the run twice); anything else is refused."""
        container = self.client.containers.get(name)
        key = "mlplatform.run-id" if "mlplatform.run-id" in labels else "mlplatform.deployment-id"
        if container.labels.get(key) != labels[key]:
            raise BackendError(f"a container named {name} already exists and does not belong to this platform object")
        log.info("container %s already exists for %s=%s; reusing it", name, key, labels[key])
        if container.status in _PENDING_STATES:
            container.start()
        return container

    def _stop(self, container_id: str, grace: float | None = None) -> None:
        grace = self.stop_grace if grace is None else grace
        try:
            self.client.api.stop(container_id, timeout=max(0, int(round(grace))))
        except docker.errors.APIError as exc:
            if _is_not_found(exc) or exc.status_code == 304:
                return
            info = self.client.api.inspect_container(container_id)
            if info["State"].get("Running"):
                raise

    def _halt(self, container_id: str, attempts: int = 10) -> None:
        """Stop a crash-looping container for good. A stop that lands between two of Podman's
        restarts is a no-op and the restart policy goes on, so stop until it stays stopped."""
        for _ in range(attempts):
            self._stop(container_id, 1.0)
            for _ in range(5):
                time.sleep(0.2)
                info = self._inspect_sync(container_id)
                if info is None:
                    return
                if (info.get("State") or {}).get("Running"):
                    break
            else:
                return
        log.warning("container %s keeps restarting although it was stopped %d times", container_id, attempts)

    def _inspect_sync(self, container_id: str) -> dict[str, Any] | None:
        try:
            return self.client.api.inspect_container(container_id)
        except docker.errors.APIError as exc:
            if _is_not_found(exc):
                return None
            raise

    def _container_logs(self, container_id: str) -> str | None:
        try:
            data = self.client.api.logs(container_id, stdout=True, stderr=True, stream=False)
        except docker.errors.APIError as exc:
            if _is_not_found(exc):
                return None
            raise
        return data.decode(errors="replace")

    def _save_logs_and_remove(self, container_id: str, log_path: Path) -> None:
        text = self._container_logs(container_id)
        if text is None:  # already removed: the log was saved then (or the container was lost)
            return
        log_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = log_path.with_name(f".{log_path.name}.tmp")
        tmp.write_text(text)
        os.replace(tmp, log_path)
        try:
            self.client.api.remove_container(container_id, v=True, force=True)
        except docker.errors.APIError as exc:
            if not _is_not_found(exc):
                raise

    def _code_in_image(self, image: str, model: str, version: str) -> bool:
        """Whether `image` is this version's model image (built by `mlp build`, see builders/): it
        holds the code, and the notebook folder's other files, at /mlp/code, so nothing is mounted
        over it. Pulls a missing image (creating the container would); any failure here means no,
        and the create reports it as before."""
        try:
            try:
                labels = self.client.images.get(image).labels or {}
            except docker.errors.ImageNotFound:
                self.client.images.pull(image)
                labels = self.client.images.get(image).labels or {}
        except docker.errors.DockerException:
            return False
        return (CONTENT_HASH_LABEL in labels and labels.get(MODEL_LABEL) == model
                and labels.get(VERSION_LABEL) == version)

    def _code(self, mounts: "_Mounts", image: str, module_path: Path, model: str, version: str) -> bool:
        if self._code_in_image(image, model, version):
            return True
        mounts.add(module_path.parent, CODE_DIR, read_only=True)
        return False

    # -- runs ----------------------------------------------------------------
    def _run_options(self, spec: RunSpec) -> dict[str, Any]:
        image = self._require_image(spec.image, f"the {spec.action} run {spec.run_id}")
        spec.run_dir.mkdir(parents=True, exist_ok=True)
        mounts = _Mounts()
        code_in_image = self._code(mounts, image, spec.module_path, spec.model, spec.version)
        mounts.add(spec.run_dir, RUN_DIR, read_only=False)
        artifacts = spec.source_artifacts or (Path(spec.env["MLP_ARTIFACTS"]) if spec.env.get("MLP_ARTIFACTS") else None)
        if spec.action == "batch-predict" and artifacts is not None:
            mounts.add(artifacts, ARTIFACTS_DIR, read_only=True)
        elif artifacts is not None and not mounts.covers(artifacts):  # train: artifacts kept outside run_dir
            artifacts.mkdir(parents=True, exist_ok=True)
            mounts.add(artifacts, ARTIFACTS_DIR, read_only=False)
        result = spec.env.get("MLP_RESULT_PATH")
        if result and not mounts.covers(Path(result)):
            Path(result).parent.mkdir(parents=True, exist_ok=True)
            mounts.add(Path(result).parent, RESULT_DIR, read_only=False)
        inputs = spec.inputs or (Path(spec.env["MLP_INPUTS"]) if spec.env.get("MLP_INPUTS") else None)
        if inputs is not None:
            mounts.add(inputs, INPUT_DIR / (Path(os.path.abspath(inputs)).name or "input"), read_only=True)
        outputs = spec.outputs or (Path(spec.env["MLP_OUTPUTS"]) if spec.env.get("MLP_OUTPUTS") else None)
        if outputs is not None:
            outputs.parent.mkdir(parents=True, exist_ok=True)
            mounts.add(outputs.parent, OUTPUT_DIR, read_only=False)
        environment = self._environment(spec.env, mounts, code_in_image)
        environment.update(rendezvous_env(spec.hardware, "127.0.0.1"))  # several GPUs: torchrun
        options: dict[str, Any] = {
            "image": image,
            "command": ["python3", "-m", "mlplatform_server.runtime", spec.action],
            "environment": environment,
            "mounts": mounts.docker_mounts(),
            "working_dir": str(RUN_DIR),
            "user": "0:0",
            "network_mode": self.network_mode,
            **self._resources(spec.hardware),
        }
        if spec.env.get("MLP_URL") and not self.api_host and self.network_mode != "host":
            host = urllib.parse.urlsplit(spec.env["MLP_URL"]).hostname
            if host in ("127.0.0.1", "localhost", "::1"):
                log.warning("run %s: MLP_URL %s is loopback but the container's network is %r; "
                            "metrics will not reach the API (set api_host)", spec.run_id, spec.env["MLP_URL"],
                            self.network_mode)
        return options

    async def submit(self, spec: RunSpec) -> str:
        # The user's credentials go into the container's environment (Config.Env).
        options = await self._call(self._run_options, await self.with_credentials(spec))
        labels = {**spec.labels, MANAGED_LABEL: "true"}
        name = f"mlp-run-{spec.run_id}"
        try:
            container = await self._call(self._create_and_start, name, labels, options)
        except BackendError as exc:
            append_text(spec.run_dir / "logs.txt", f"MLP_ERROR {exc.message}\n")
            raise
        return container.id

    async def status(self, ref: str, spec: RunSpec) -> RunStatus:
        info = await self._inspect(ref)
        result = read_result(spec.run_dir / "result.json")
        if info is None:
            if result is not None:  # finished and cleaned up
                return result
            return RunStatus(RunState.FAILED, "the run's container was deleted outside the platform")
        state = info.get("State") or {}
        status = str(state.get("Status") or "").lower()
        if state.get("Running") or status in _RUNNING_STATES:
            return RunStatus(RunState.RUNNING)
        if status in _PENDING_STATES:
            return RunStatus(RunState.PENDING)
        exit_code = state.get("ExitCode")
        if result is not None:
            return RunStatus(result.state, result.reason, exit_code)
        reason = await self._call(self._exit_reason, info.get("Id") or ref, state, spec.hardware)
        return RunStatus(RunState.FAILED, reason, exit_code)

    def _exit_reason(self, container_id: str, state: dict[str, Any], hardware: Hardware) -> str:
        exit_code = state.get("ExitCode")
        if state.get("OOMKilled") or (exit_code == 137 and _kernel_oom_kill(container_id)):
            return f"out of memory: exceeded the hardware size's memory limit {hardware.memory}"
        if state.get("Error"):
            return f"the run's container failed: {state['Error']}"
        if exit_code == 137:
            return "killed (out of memory or SIGKILL)"
        if isinstance(exit_code, int) and exit_code > 128:
            try:
                name = signal.Signals(exit_code - 128).name
            except ValueError:
                name = f"signal {exit_code - 128}"
            return f"the run's container was killed by {name}"
        return f"the run's container exited with code {exit_code} without reporting a result"

    async def logs(self, ref: str, spec: RunSpec, follow: bool = False) -> AsyncIterator[str]:
        if not follow:
            text = await self._call(self._container_logs, ref)
            if text is None:
                text = read_text(spec.run_dir / "logs.txt")
            if text:
                yield text
            return
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        done = object()
        holder: dict[str, Any] = {}

        def put(item: Any) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                return True
            except RuntimeError:  # the loop is closed: nobody is listening any more
                return False

        def pump() -> None:
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                stream = self.client.api.logs(ref, stdout=True, stderr=True, stream=True, follow=True)
                holder["stream"] = stream
                if holder.get("closed"):
                    stream.close()
                    return
                for chunk in stream:
                    text = decoder.decode(chunk)
                    if text and not put(text):
                        stream.close()
                        return
                put(decoder.decode(b"", final=True))
            except Exception as exc:  # handed to the consumer (a closed stream ends quietly)
                if not holder.get("closed"):
                    put(exc)
            finally:
                put(done)

        # A thread of its own, not the default executor: a follow can last as long as the run,
        # and a few of them must not starve every other engine call.
        thread = threading.Thread(target=pump, name=f"mlp-logs-{ref[:12]}", daemon=True)
        thread.start()
        try:
            while True:
                item = await queue.get()
                if item is done:
                    break
                if isinstance(item, Exception):
                    if isinstance(item, docker.errors.APIError) and _is_not_found(item):
                        text = read_text(spec.run_dir / "logs.txt")
                        if text:
                            yield text
                        break
                    raise item
                if item:
                    yield item
        finally:
            holder["closed"] = True
            stream = holder.get("stream")
            if stream is not None and thread.is_alive():
                try:
                    stream.close()
                except Exception:
                    pass

    async def cancel(self, ref: str, spec: RunSpec) -> None:
        await self._call(self._stop, ref)

    async def cleanup(self, ref: str, spec: RunSpec) -> None:
        await self._call(self._save_logs_and_remove, ref, spec.run_dir / "logs.txt")

    # -- deployments ---------------------------------------------------------
    def _deploy_options(self, spec: DeploymentSpec, port: int) -> dict[str, Any]:
        image = self._require_image(spec.image, f"deployment {spec.name}")
        mounts = _Mounts()
        code_in_image = self._code(mounts, image, spec.module_path, spec.model, spec.version)
        mounts.add(spec.artifacts, ARTIFACTS_DIR, read_only=True)
        host_mode = self.network_mode == "host"
        env = {
            **spec.env,
            "MLP_PORT": str(port),
            "MLP_HOST": "127.0.0.1" if host_mode else "0.0.0.0",
            "MLP_WORKERS": str(spec.replicas),
        }
        environment = self._environment(env, mounts, code_in_image)
        options: dict[str, Any] = {
            "image": image,
            "command": ["python3", "-m", "mlplatform_server.runtime", "serve"],
            "environment": environment,
            "mounts": mounts.docker_mounts(),
            "user": "0:0",
            "network_mode": self.network_mode,
            "restart_policy": {"Name": "unless-stopped"},
            **self._resources(spec.hardware),
        }
        if not host_mode:
            options["ports"] = {f"{port}/tcp": ("127.0.0.1", port)}
        return options

    async def deploy(self, spec: DeploymentSpec) -> str:
        port = free_port()
        options = await self._call(self._deploy_options, await self.with_credentials(spec), port)
        labels = {**spec.labels, MANAGED_LABEL: "true"}
        # One container per generation: a new version, rollback or scale starts a new container
        # before the platform stops the old one (a retried deploy of the same generation reuses it).
        name = f"mlp-dep-{spec.name}-{spec.deployment_id[:6]}-{spec.generation}"
        container = await self._call(self._create_and_start, name, labels, options)
        env = dict(e.split("=", 1) for e in (container.attrs.get("Config") or {}).get("Env") or [] if "=" in e)
        if env.get("MLP_PORT", "").isdigit():  # a reused container keeps its own port
            port = int(env["MLP_PORT"])
        return f"{container.id}:{port}"

    async def deployment_status(self, ref: str, spec: DeploymentSpec) -> DeploymentStatus:
        container_id, _, port = ref.rpartition(":")
        url = f"http://127.0.0.1:{port}"
        info = await self._inspect(container_id)
        if info is None:
            saved = read_text(_deploy_log(spec))
            tail = f": {_tail(saved)}" if saved else ""
            return DeploymentStatus("failed", None, f"the deployment's container was deleted outside the platform{tail}")
        state = info.get("State") or {}
        status = str(state.get("Status") or "").lower()
        restarts = int(info.get("RestartCount") or 0)
        if state.get("Running") and status != "restarting":
            if await self._call(ping, url):
                return DeploymentStatus("ready", url)
            if restarts < CRASH_LOOP_RESTARTS:
                return DeploymentStatus("deploying", url)
        elif status in _PENDING_STATES:
            return DeploymentStatus("deploying", url)
        # Stopped, restarting, or running again after crashing again and again: failed. The
        # restart policy would keep it crash-looping (Podman restarts at once, without back-off),
        # so stop it; the container and its log stay until undeploy.
        text = await self._call(self._container_logs, container_id) or ""
        code = state.get("ExitCode")
        oom = state.get("OOMKilled") or (code == 137 and await self._call(_kernel_oom_kill, info.get("Id") or ""))
        if oom:
            why = f"out of memory: exceeded the hardware size's memory limit {spec.hardware.memory}"
        elif restarts:
            why = f"the serving container keeps crashing (restarted {restarts} times, last exit code {code})"
        else:
            why = f"the serving container stopped (exit code {code})"
        await self._call(self._halt, container_id)
        return DeploymentStatus("failed", None, f"{why}: {_tail(text)}")

    async def undeploy(self, ref: str, spec: DeploymentSpec) -> None:
        container_id = ref.rpartition(":")[0] or ref

        def stop_and_remove() -> None:
            self._stop(container_id)
            self._save_logs_and_remove(container_id, _deploy_log(spec))

        await self._call(stop_and_remove)

    async def close(self) -> None:
        await self._call(self.client.close)


def _kernel_oom_kill(container_id: str, max_records: int = 200_000) -> bool:
    """Whether the kernel log records an out-of-memory kill in this container's memory cgroup.

    A fallback for engines that do not report ``State.OOMKilled`` (Podman 4.3 on cgroup v1 never
    sets it). The kernel names the cgroup, which holds the container id (``libpod-<id>``,
    ``docker/<id>``, ``docker-<id>.scope``). Best effort: needs a local engine and a readable
    /dev/kmsg, and the record must still be in the ring buffer.
    """
    if len(container_id) < 12:
        return False
    try:
        fd = os.open("/dev/kmsg", os.O_RDONLY | os.O_NONBLOCK)
    except OSError:
        return False
    try:
        for _ in range(max_records):
            try:
                record = os.read(fd, 8192)
            except BlockingIOError:  # end of the buffer
                return False
            except BrokenPipeError:  # records were overwritten while reading: go on
                continue
            except OSError:
                return False
            if not record:
                return False
            if b"oom" in record and container_id.encode() in record:
                return True
        return False
    finally:
        os.close(fd)


def _deploy_log(spec: DeploymentSpec) -> Path:
    return (spec.deploy_dir or spec.artifacts.parent) / "logs.txt"




def _explanation(exc: Exception) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc)


def _no_gpu_message(hardware: Hardware) -> str:
    plural = "GPU" if hardware.gpus == 1 else "GPUs"
    return (f"hardware size {hardware.name} asks for {hardware.gpus} {plural} but this machine has none "
            "(the container engine reports no nvidia runtime and /dev/nvidiactl does not exist)")
