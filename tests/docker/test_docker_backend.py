"""The docker backend against a real engine (Podman's Docker-compatible API in CI) and a real image.

RunSpecs and DeploymentSpecs are built directly (no platform server): each test writes a small
model module to tmp_path, and the runtime inside the container writes result.json, artifacts and
outputs through the bind mounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import textwrap
import threading
import time
import urllib.request
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from mlplatform_server.backends.base import DeploymentSpec, Hardware, RunSpec, RunState
from mlplatform_server.errors import BackendError, InvalidInput

pytestmark = [pytest.mark.docker, pytest.mark.timeout(120)]

SMALL = Hardware(name="small", cpu=0.5, memory="256Mi")


def write_module(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "code" / "model.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(source))
    return path


def run_spec(
    tmp_path: Path,
    image: str,
    user: str,
    module: Path,
    action: str = "train",
    hardware: Hardware = SMALL,
    env: dict[str, str] | None = None,
    **extra,
) -> RunSpec:
    run_id = uuid.uuid4().hex[:12]
    run_dir = tmp_path / "runs" / run_id
    artifacts = extra.get("source_artifacts") or run_dir / "artifacts"
    base_env = {
        "MLP_RUN_ID": run_id,
        "MLP_MODULE_PATH": str(module),
        "MLP_HYPERPARAMETERS": json.dumps({}),
        "MLP_ARTIFACTS": str(artifacts),
        "MLP_RESULT_PATH": str(run_dir / "result.json"),
    }
    if extra.get("inputs"):
        base_env["MLP_INPUTS"] = str(extra["inputs"])
    if extra.get("outputs"):
        base_env["MLP_OUTPUTS"] = str(extra["outputs"])
    return RunSpec(
        run_id=run_id,
        action=action,
        user=user,
        model="m",
        version="1",
        module_path=module,
        run_dir=run_dir,
        hyperparameters={},
        hardware=hardware,
        image=image,
        env={**base_env, **(env or {})},
        **extra,
    )


async def wait_final(backend, ref: str, spec: RunSpec, timeout: float = 45.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = await backend.status(ref, spec)
        if status.state.final:
            return status
        await asyncio.sleep(0.2)
    pytest.fail(f"run {spec.run_id} did not finish in {timeout}s; logs: {await collect_logs(backend, ref, spec)}")


async def collect_logs(backend, ref: str, spec: RunSpec, follow: bool = False) -> str:
    return "".join([chunk async for chunk in backend.logs(ref, spec, follow=follow)])


class MetricsSink:
    """A stand-in for the platform API on the host: records metric POSTs (proves host networking)."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, str, object]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                sink.posts.append((self.path, self.headers.get("Authorization", ""), json.loads(body or b"null")))
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


TRAIN = """
import os

class Model:
    hyperparameters = {"C": 1.0}

    def train(self):
        print("training with C =", self.hyperparameters["C"], "as uid", os.getuid())
        self.log_metric("accuracy", 0.75)
        (self.artifacts / "model.txt").write_text("weights " + str(self.hyperparameters["C"]))
"""


async def test_train_succeeds_with_artifacts_logs_and_metrics(backend, engine, test_image, test_user, tmp_path):
    sink = MetricsSink()
    try:
        module = write_module(tmp_path, TRAIN)
        spec = run_spec(tmp_path, test_image, test_user, module,
                        env={"MLP_URL": sink.url, "MLP_RUN_TOKEN": "run-token-1",
                             "MLP_HYPERPARAMETERS": json.dumps({"C": 0.5})})
        ref = await backend.submit(spec)
        status = await wait_final(backend, ref, spec)
    finally:
        sink.close()
    logs = await collect_logs(backend, ref, spec)
    assert status.state is RunState.SUCCEEDED, (status, logs)
    assert status.exit_code == 0
    assert (spec.run_dir / "artifacts" / "model.txt").read_text() == "weights 0.5"
    assert "training with C = 0.5 as uid 0" in logs

    # the metric reached the "API" on the host's loopback: host networking works
    assert [(p, a) for p, a, _ in sink.posts] == [(f"/api/v1/runs/{spec.run_id}/metrics", "Bearer run-token-1")]
    assert "accuracy" in json.dumps(sink.posts[0][2])

    info = engine.api.inspect_container(ref)
    assert info["Name"].lstrip("/") == f"mlp-run-{spec.run_id}"
    labels = info["Config"]["Labels"]
    assert labels["mlplatform.managed"] == "true"
    assert labels["mlplatform.run-id"] == spec.run_id and labels["mlplatform.kind"] == "train"
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["MLP_MODULE_PATH"] == "/mlp/code/model.py"
    assert env["MLP_ARTIFACTS"] == "/mlp/run/artifacts"
    assert env["MLP_RESULT_PATH"] == "/mlp/run/result.json"
    assert env["PYTHONUNBUFFERED"] == "1"
    mounts = {m["Destination"]: m for m in info["Mounts"]}
    assert mounts["/mlp/code"]["Source"] == str(module.parent) and not mounts["/mlp/code"]["RW"]
    assert mounts["/mlp/run"]["Source"] == str(spec.run_dir) and mounts["/mlp/run"]["RW"]

    # cleanup keeps the log and removes the container; the result file still answers
    await backend.cleanup(ref, spec)
    assert "training with C = 0.5" in (spec.run_dir / "logs.txt").read_text()
    assert not engine.containers.list(all=True, filters={"id": ref})
    await backend.cleanup(ref, spec)  # idempotent
    assert (await backend.status(ref, spec)).state is RunState.SUCCEEDED
    assert "training with C = 0.5" in await collect_logs(backend, ref, spec)


async def test_user_exception_fails_with_reason(backend, test_image, test_user, tmp_path):
    module = write_module(tmp_path, """
        class Model:
            hyperparameters = {}

            def train(self):
                raise ValueError("the data has no rows")
    """)
    spec = run_spec(tmp_path, test_image, test_user, module)
    ref = await backend.submit(spec)
    status = await wait_final(backend, ref, spec)
    assert status.state is RunState.FAILED
    assert "ValueError" in status.reason and "the data has no rows" in status.reason
    assert status.exit_code == 1
    assert "Traceback" in await collect_logs(backend, ref, spec)
    # a submit retried (say after a crash before the ref was stored) finds the same container
    # and does not run the user's code twice
    assert await backend.submit(spec) == ref
    assert (await collect_logs(backend, ref, spec)).count("MLP_START") == 1


SLEEPER = """
import time

class Model:
    hyperparameters = {}

    def train(self):
        print("sleeping", flush=True)
        time.sleep(300)
"""


async def test_limits_follow_logs_and_cancel(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, SLEEPER)
    spec = run_spec(tmp_path, test_image, test_user, module, hardware=Hardware(name="tiny", cpu=0.5, memory="192Mi"))
    ref = await backend.submit(spec)

    host_config = engine.api.inspect_container(ref)["HostConfig"]
    assert host_config["Memory"] == 192 * 1024**2
    assert host_config["NanoCpus"] == 500_000_000
    assert host_config["NetworkMode"] == "host"

    seen = ""
    async with asyncio.timeout(30):
        async for chunk in backend.logs(ref, spec, follow=True):
            seen += chunk
            if "sleeping" in seen:
                break  # leaving a follow early must not hang
    assert (await backend.status(ref, spec)).state is RunState.RUNNING

    started = time.monotonic()
    await backend.cancel(ref, spec)
    assert time.monotonic() - started < 10
    state = engine.api.inspect_container(ref)["State"]
    assert not state["Running"]
    status = await backend.status(ref, spec)
    assert status.state is RunState.FAILED and "SIGTERM" in status.reason  # the runtime's own result
    await backend.cancel(ref, spec)  # idempotent on a stopped container
    # a follow on a finished container ends by itself
    async with asyncio.timeout(15):
        assert "sleeping" in await collect_logs(backend, ref, spec, follow=True)


async def test_out_of_memory_is_reported(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, """
        class Model:
            hyperparameters = {}

            def train(self):
                print("allocating", flush=True)
                blocks = [bytearray(16 * 1024 * 1024) for _ in range(64)]
    """)
    spec = run_spec(tmp_path, test_image, test_user, module, hardware=Hardware(name="mini", cpu=1, memory="96Mi"))
    ref = await backend.submit(spec)
    status = await wait_final(backend, ref, spec)
    assert status.state is RunState.FAILED and status.exit_code == 137, status
    oom_known = engine.api.inspect_container(ref)["State"].get("OOMKilled") or os.access("/dev/kmsg", os.R_OK)
    if oom_known:
        assert status.reason == "out of memory: exceeded the hardware size's memory limit 96Mi"
    else:
        assert status.reason == "killed (out of memory or SIGKILL)"
    assert "allocating" in await collect_logs(backend, ref, spec)


async def test_container_deleted_behind_our_back(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, SLEEPER)
    spec = run_spec(tmp_path, test_image, test_user, module)
    ref = await backend.submit(spec)
    engine.api.remove_container(ref, force=True)
    status = await backend.status(ref, spec)
    assert status.state is RunState.FAILED
    assert status.reason == "the run's container was deleted outside the platform"
    # the other verbs take it in their stride
    assert await collect_logs(backend, ref, spec) == ""
    await backend.cancel(ref, spec)
    await backend.cleanup(ref, spec)


async def test_batch_predict_mounts(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, """
        import os

        class Model:
            hyperparameters = {}

            def batch_predict(self):
                factor = int((self.artifacts / "factor.txt").read_text())
                numbers = [int(x) for x in self.inputs.read_text().split()]
                writable = {"inputs": os.access(self.inputs, os.W_OK), "artifacts": os.access(self.artifacts, os.W_OK)}
                self.outputs.write_text(" ".join(str(n * factor) for n in numbers) + "\\n" + repr(writable))
                print("predicted", len(numbers), "rows from", self.inputs)
    """)
    source = tmp_path / "trained" / "artifacts"
    source.mkdir(parents=True)
    (source / "factor.txt").write_text("3")
    inputs = tmp_path / "data" / "numbers.txt"
    inputs.parent.mkdir()
    inputs.write_text("1 2 3")
    outputs = tmp_path / "results" / "day1" / "predictions.txt"  # the parent does not exist yet
    spec = run_spec(tmp_path, test_image, test_user, module, action="batch-predict",
                    source_artifacts=source, inputs=inputs, outputs=outputs)
    ref = await backend.submit(spec)
    status = await wait_final(backend, ref, spec)
    logs = await collect_logs(backend, ref, spec)
    assert status.state is RunState.SUCCEEDED, (status, logs)
    assert outputs.read_text() == "3 6 9\n{'inputs': False, 'artifacts': False}"
    assert "predicted 3 rows from /mlp/input/numbers.txt" in logs

    info = engine.api.inspect_container(ref)
    env = dict(e.split("=", 1) for e in info["Config"]["Env"])
    assert env["MLP_ARTIFACTS"] == "/mlp/artifacts"
    assert env["MLP_INPUTS"] == "/mlp/input/numbers.txt"
    assert env["MLP_OUTPUTS"] == "/mlp/output/predictions.txt"
    assert info["Config"]["Labels"]["mlplatform.kind"] == "batch-predict"
    mounts = {m["Destination"]: (m["Source"], m["RW"]) for m in info["Mounts"]}
    assert mounts["/mlp/artifacts"] == (str(source), False)
    assert mounts["/mlp/input/numbers.txt"] == (str(inputs), False)
    assert mounts["/mlp/output"] == (str(outputs.parent), True)


async def test_deploy_ping_invocations_undeploy(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, """
        class Model:
            hyperparameters = {}

            def init_predict(self):
                self.offset = int((self.artifacts / "offset.txt").read_text())

            def predict(self, features):
                return {"y": features["x"] + self.offset}
    """)
    artifacts = tmp_path / "runs" / "r1" / "artifacts"
    artifacts.mkdir(parents=True)
    (artifacts / "offset.txt").write_text("100")
    dep_id = uuid.uuid4().hex
    spec = DeploymentSpec(
        deployment_id=dep_id, name="adder", user=test_user, model="m", version="1", module_path=module,
        artifacts=artifacts, hardware=SMALL, image=test_image,
        env={"MLP_MODULE_PATH": str(module), "MLP_ARTIFACTS": str(artifacts), "MLP_RUN_ID": "r1"},
        deploy_dir=tmp_path / "deployments" / dep_id,
    )
    ref = await backend.deploy(spec)
    container_id, _, port = ref.rpartition(":")
    info = engine.api.inspect_container(container_id)
    assert info["Name"].lstrip("/") == f"mlp-dep-adder-{dep_id[:6]}-1"  # generation 1
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["Config"]["Labels"]["mlplatform.deployment-id"] == dep_id

    deadline = time.monotonic() + 45
    status = await backend.deployment_status(ref, spec)
    while status.state != "ready" and time.monotonic() < deadline:
        assert status.state == "deploying", status
        await asyncio.sleep(0.2)
        status = await backend.deployment_status(ref, spec)
    assert status.state == "ready", status
    assert status.url == f"http://127.0.0.1:{port}"

    request = urllib.request.Request(f"{status.url}/invocations", data=json.dumps({"x": 5}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read()) == {"y": 105}

    await backend.undeploy(ref, spec)
    assert not engine.containers.list(all=True, filters={"id": container_id})
    assert (spec.deploy_dir / "logs.txt").exists()
    gone = await backend.deployment_status(ref, spec)
    assert gone.state == "failed" and "deleted outside the platform" in gone.reason
    await backend.undeploy(ref, spec)  # idempotent


async def test_broken_deployment_fails_with_log_tail(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, """
        class Model:
            hyperparameters = {}

            def init_predict(self):
                raise RuntimeError("weights file is corrupt")

            def predict(self, features):
                return features
    """)
    artifacts = tmp_path / "artifacts"
    artifacts.mkdir()
    dep_id = uuid.uuid4().hex
    spec = DeploymentSpec(
        deployment_id=dep_id, name="broken", user=test_user, model="m", version="1", module_path=module,
        artifacts=artifacts, hardware=SMALL, image=test_image,
        env={"MLP_MODULE_PATH": str(module), "MLP_ARTIFACTS": str(artifacts)},
    )
    ref = await backend.deploy(spec)
    deadline = time.monotonic() + 45
    status = await backend.deployment_status(ref, spec)
    while status.state != "failed" and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
        status = await backend.deployment_status(ref, spec)
    assert status.state == "failed", status
    assert "weights file is corrupt" in status.reason
    # the restart policy would crash-loop it for ever: a failed deployment is stopped
    container_id = ref.rpartition(":")[0]
    for _ in range(5):
        await asyncio.sleep(0.3)
        assert not engine.api.inspect_container(container_id)["State"]["Running"]
    await backend.undeploy(ref, spec)
    assert "weights file is corrupt" in (artifacts.parent / "logs.txt").read_text()


async def test_refusals_before_anything_runs(backend, engine, test_image, test_user, tmp_path):
    module = write_module(tmp_path, TRAIN)
    if backend._has_gpus():
        pytest.skip("this machine has a GPU: the refusal cannot be shown")  # never in CI
    gpu = run_spec(tmp_path, test_image, test_user, module, hardware=Hardware(name="gpu-1", cpu=1, memory="1Gi", gpus=1))
    with pytest.raises(InvalidInput, match="hardware size gpu-1 asks for 1 GPU but this machine has none"):
        backend.check_hardware(gpu.hardware)  # what the API asks before recording the run: a 400
    with pytest.raises(BackendError, match="hardware size gpu-1 asks for 1 GPU but this machine has none"):
        await backend.submit(gpu)

    no_image = run_spec(tmp_path, None, test_user, module)
    with pytest.raises(BackendError, match="none was given"):
        await backend.submit(no_image)

    missing = run_spec(tmp_path, "localhost:1/mlplatform/no-such-image:never", test_user, module)
    with pytest.raises(BackendError, match="could not be pulled"):
        await backend.submit(missing)
    assert "could not be pulled" in (missing.run_dir / "logs.txt").read_text()
    assert not engine.containers.list(all=True, filters={"label": f"mlplatform.user={test_user}"})


async def test_options_for_a_bridge_network(docker_host, test_image, test_user, tmp_path):
    """Without host networking, MLP_URL's host becomes `api_host` and a deployment's port is
    published on the host's loopback (only the options: this rig has no bridge network)."""
    from mlplatform_server.backends.docker import DockerBackend

    bridged = DockerBackend(base_url=docker_host, network_mode="bridge", api_host="host.containers.internal")
    try:
        module = write_module(tmp_path, TRAIN)
        spec = run_spec(tmp_path, test_image, test_user, module,
                        env={"MLP_URL": "http://127.0.0.1:8765/base", "MLP_TOKEN": "platform-secret"})
        options = bridged._run_options(spec)
        assert options["network_mode"] == "bridge"
        assert options["environment"]["MLP_URL"] == "http://host.containers.internal:8765/base"
        assert "MLP_TOKEN" not in options["environment"]
        assert options["mem_limit"] == options["memswap_limit"] == 256 * 1024**2
        assert options["nano_cpus"] == 500_000_000
        assert options["user"] == "0:0"

        artifacts = tmp_path / "a"
        dep = DeploymentSpec(deployment_id="d" * 12, name="x", user=test_user, model="m", version="1",
                             module_path=module, artifacts=artifacts, hardware=SMALL, image=test_image,
                             env={"MLP_MODULE_PATH": str(module), "MLP_ARTIFACTS": str(artifacts)}, replicas=2)
        options = bridged._deploy_options(dep, 8123)
        assert options["ports"] == {"8123/tcp": ("127.0.0.1", 8123)}
        env = options["environment"]
        assert (env["MLP_HOST"], env["MLP_PORT"], env["MLP_WORKERS"]) == ("0.0.0.0", "8123", "2")
        assert (env["MLP_MODULE_PATH"], env["MLP_ARTIFACTS"]) == ("/mlp/code/model.py", "/mlp/artifacts")
    finally:
        await bridged.close()
