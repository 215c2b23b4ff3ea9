"""The environment images of images/ (built by scripts/build-images.sh, `make images`), each run as
real containers on the test engine (Podman's Docker-compatible API):

- python (the `base` environment): Debian's numpy/pandas/scikit-learn/xgboost, JupyterLab serving
  the mlplatform extension and the TensorBoard launcher, jupyterhub-singleuser, `mlp`;
- deep-learning: PyTorch (CPU) trains and writes TensorBoard events;
- gpu: PyTorch's CUDA build with the CUDA runtime libraries loadable. There is no GPU on the test
  machine, so CUDA kernels are not run here (torch.cuda.is_available() is False); that stand-in is
  the only one;
- hub (also tagged platform): the platform API answers from it, JupyterHub and KubeSpawner are in it.
"""

from __future__ import annotations

import json
import os
import secrets
import textwrap
import uuid

import httpx
import pytest

from support import free_port, wait_until

pytestmark = pytest.mark.docker


def image_of(variable: str) -> str:
    value = os.environ.get(variable)
    if not value:
        pytest.fail(f"{variable} is not set: run the suite with `make test` (scripts/build-images.sh writes it)")
    return value


def run_script(engine, image: str, script: str, user: str = "1000", **kwargs) -> dict:
    """Run a Python script in a fresh container as `user`; return the JSON its last line prints."""
    container = engine.containers.run(image, ["python3", "-c", textwrap.dedent(script)], detach=True,
                                      user=user, labels={"mlplatform.test": "environment-images"}, **kwargs)
    try:
        status = container.wait(timeout=300)
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, output
    return json.loads(output.strip().splitlines()[-1])


def run_command(engine, image: str, command: list[str], user: str = "1000") -> str:
    container = engine.containers.run(image, command, detach=True, user=user,
                                      labels={"mlplatform.test": "environment-images"})
    try:
        status = container.wait(timeout=120)
        output = container.logs().decode()
    finally:
        container.remove(force=True)
    assert status["StatusCode"] == 0, f"{command} exited {status['StatusCode']}: {output}"
    return output


@pytest.fixture
def background(engine):
    """Start long-running containers (host network); all removed afterwards."""
    started = []

    def start(image: str, command: list[str], **kwargs):
        container = engine.containers.run(image, command, detach=True, network_mode="host", user="1000",
                                          name=f"mlp-envtest-{uuid.uuid4().hex[:8]}",
                                          labels={"mlplatform.test": "environment-images"}, **kwargs)
        started.append(container)
        return container

    yield start
    for container in started:
        container.remove(force=True)


def wait_for_http(url: str, container, **params) -> httpx.Response:
    def answered():
        container.reload()
        if container.status == "exited":
            pytest.fail(f"the container exited: {container.logs().decode()[-3000:]}")
        try:
            response = httpx.get(url, params=params, timeout=5)
        except httpx.HTTPError:
            return None
        return response if response.status_code == 200 else None

    return wait_until(f"{url} to answer 200", answered, timeout=90)


def test_base_image_has_the_data_science_stack(engine):
    found = run_script(engine, image_of("MLP_TEST_IMAGE"), """
        import json, os, numpy, pandas, sklearn, xgboost, tensorboard, mlplatform_server
        from importlib.metadata import entry_points
        from sklearn.datasets import load_iris
        X, y = load_iris(return_X_y=True)
        booster = xgboost.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
        frame = pandas.DataFrame(X).describe()
        print(json.dumps({
            "xgb_accuracy": float((booster.predict(X) == y).mean()),
            "rows": int(frame.loc["count", 0]),
            "launchers": [e.name for e in entry_points(group="jupyter_serverproxy_servers")],
            "home": os.path.expanduser("~"),
        }))
    """)
    assert found["xgb_accuracy"] > 0.9 and found["rows"] == 150
    assert "tensorboard" in found["launchers"]
    assert found["home"] == "/home/mlp"  # uid 1000 is the image's user mlp (Kubernetes runs it so)

    image = image_of("MLP_TEST_IMAGE")
    assert "mlplatform" in run_command(engine, image, ["jupyter", "labextension", "list"])
    assert run_command(engine, image, ["jupyterhub-singleuser", "--version"]).strip()[0].isdigit()
    assert "train" in run_command(engine, image, ["mlp", "--help"])


def test_base_image_serves_jupyterlab_with_the_extension_and_tensorboard_launcher(engine, background):
    port, token = free_port(), secrets.token_hex(16)
    lab = background(image_of("MLP_TEST_IMAGE"),
                     ["jupyter", "lab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
                      f"--IdentityProvider.token={token}", "--ServerApp.root_dir=/home/mlp"])
    base = f"http://127.0.0.1:{port}"
    page = wait_for_http(f"{base}/lab", lab, token=token)
    assert '"name": "mlplatform"' in page.text or '"name":"mlplatform"' in page.text.replace(" ", "")
    config = httpx.get(f"{base}/mlplatform/config", params={"token": token}, timeout=10).json()
    assert config["in_process"] is True and config["user"]["name"] == "admin", config  # no hub: its own platform
    profiles = httpx.get(f"{base}/mlplatform/api/profiles", params={"token": token}, timeout=10)
    assert profiles.status_code == 200, profiles.text
    assert {"python", "deep-learning", "gpu"} <= {e["name"] for e in profiles.json()["environments"]}
    servers = httpx.get(f"{base}/server-proxy/servers-info", params={"token": token}, timeout=10).json()
    assert "tensorboard" in [s["name"] for s in servers["server_processes"]], servers


def test_deep_learning_image_trains_with_pytorch_and_writes_tensorboard_events(engine):
    found = run_script(engine, image_of("MLP_TEST_IMAGE_DEEP_LEARNING"), """
        import json, pathlib, torch
        from torch.utils.tensorboard import SummaryWriter
        torch.manual_seed(0)
        x = torch.randn(256, 3)
        y = x @ torch.tensor([[2.0], [-1.0], [0.5]]) + 0.3
        model = torch.nn.Linear(3, 1)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
        writer = SummaryWriter("/tmp/tb")
        first = None
        for step in range(200):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(model(x), y)
            loss.backward()
            optimizer.step()
            writer.add_scalar("loss", loss.item(), step)
            first = first if first is not None else loss.item()
        writer.close()
        print(json.dumps({"torch": torch.__version__, "first": first, "last": loss.item(),
                          "events": [p.name for p in pathlib.Path("/tmp/tb").iterdir()]}))
    """)
    assert found["last"] < 1e-3 < found["first"], found
    assert any(name.startswith("events.out.tfevents.") for name in found["events"]), found


def test_gpu_image_has_the_cuda_build_of_pytorch_and_the_cuda_runtime(engine):
    found = run_script(engine, image_of("MLP_TEST_IMAGE_GPU"), """
        import ctypes, json, os, pathlib, torch
        import nvidia.cuda_runtime
        lib = next(pathlib.Path(nvidia.cuda_runtime.__path__[0], "lib").glob("libcudart.so.*"))
        cudart = ctypes.CDLL(str(lib))
        version = ctypes.c_int()
        cudart.cudaRuntimeGetVersion(ctypes.byref(version))
        print(json.dumps({
            "cuda": torch.version.cuda, "runtime": version.value, "cudnn": torch.backends.cudnn.version(),
            "gpu_seen": torch.cuda.is_available(), "cpu_ok": float((torch.ones(3) * 2).sum()),
            "visible": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
            "capabilities": os.environ.get("NVIDIA_DRIVER_CAPABILITIES"),
        }))
    """)
    assert found["cuda"].startswith("12.") and found["runtime"] >= 12000, found
    assert found["cudnn"] and found["cudnn"] >= 9000, found
    assert found["gpu_seen"] is False  # stand-in: no GPU (nor NVIDIA driver) on the test machine
    assert found["cpu_ok"] == 6.0
    assert (found["visible"], found["capabilities"]) == ("all", "compute,utility")


def test_hub_image_runs_the_platform_api_and_carries_jupyterhub_with_kubespawner(engine, background):
    hub = image_of("MLP_TEST_IMAGE_HUB")
    assert engine.images.get("localhost/mlplatform/platform:latest").id == engine.images.get(hub).id
    found = run_script(engine, hub, """
        import json, jupyterhub, kubespawner, mlplatform_server.hub
        print(json.dumps({"jupyterhub": jupyterhub.__version__}))
    """)
    assert found["jupyterhub"].startswith("6.")

    port = free_port()
    api = background(hub, ["mlp", "server", "--backend", "process", "--host", "127.0.0.1", f"--port={port}",
                           "--data-dir", "/tmp/mlp-data"])
    health = wait_for_http(f"http://127.0.0.1:{port}/api/v1/health", api).json()
    assert (health["status"], health["backend"]) == ("ok", "process"), health
    unauthenticated = httpx.get(f"http://127.0.0.1:{port}/api/v1/models", timeout=10)
    assert unauthenticated.status_code == 401 and "error" in unauthenticated.json()
