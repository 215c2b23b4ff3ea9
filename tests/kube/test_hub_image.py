"""The hub image (images/hub, built by `make images`) running the Helm chart's hub entry config
(helm/mlplatform/files/chart_config.py, which loads jupyter-config/jupyterhub_config.py) as the
chart runs it — uid 1000, the chart's environment variables, a separate configurable-http-proxy —
in a real container (Podman), against the real control plane: a server started through the hub's
REST API with environment `gpu` and size `gpu-1` becomes a notebook pod of the platform's profile.

Only the login differs from a cluster: JupyterHub's dummy authenticator and a test service with an
admin token (through the chart's MLP_HUB_EXTRA_CONFIG hook) instead of a browser login.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from kubetest import PVC, get_json, kubeconfig, kubectl, namespace_with_claim
from support import free_port, wait_until

ROOT = Path(__file__).resolve().parents[2]
CHP = ROOT / "tools" / "hub" / "node_modules" / ".bin" / "configurable-http-proxy"
EXTRA_CONFIG = """
c.JupyterHub.authenticator_class = "dummy"  # users made through the API (PAM would want system users)
c.JupyterHub.services.append({"name": "hubimage-test", "api_token": %r})
c.JupyterHub.load_roles.append({"name": "hubimage-test", "scopes": ["admin:users", "admin:servers", "admin:groups"],
                                "services": ["hubimage-test"]})
c.KubeSpawner.start_timeout = 60
c.KubeSpawner.http_timeout = 20
"""


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: run the suite with `make test` (make images writes it)")
    return value


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    with namespace_with_claim("mlp-hubimg") as ns:
        yield ns


@pytest.fixture(scope="module")
def priority_class() -> Iterator[str]:
    name = f"mlp-hubimg-{uuid.uuid4().hex[:6]}"
    kubectl("create", "priorityclass", name, "--value=1000", "--description=hub image test")
    yield name
    kubectl("delete", "priorityclass", name, check=False)


@pytest.fixture
def proxy() -> Iterator[tuple[str, str]]:
    """configurable-http-proxy on the host (the chart runs upstream's image); its API URL and token."""
    if not CHP.exists():
        pytest.fail(f"{CHP} is missing: run make install (scripts/install-hub-tools.sh)")
    token, api_port = secrets.token_hex(16), free_port()
    proc = subprocess.Popen([str(CHP), "--ip", "127.0.0.1", "--port", str(free_port()), "--api-ip", "127.0.0.1",
                             "--api-port", str(api_port)], env={**os.environ, "CONFIGPROXY_AUTH_TOKEN": token},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        yield f"http://127.0.0.1:{api_port}", token
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_the_hub_image_runs_the_chart_config_and_spawns_a_profile_pod(namespace, priority_class, proxy, tmp_path):
    import docker

    engine = docker.DockerClient(base_url=required("MLP_TEST_DOCKER_HOST"))
    image = required("MLP_TEST_IMAGE_HUB")
    admin_token, hub_port = secrets.token_hex(16), free_port()
    # Files the container reads as uid 1000, each bind-mounted alone (the test dir stays private).
    kube = tmp_path / "kubeconfig"
    kube.write_text(Path(kubeconfig()).read_text())
    extra = tmp_path / "extra_config.py"
    extra.write_text(EXTRA_CONFIG % admin_token)
    for path in (kube, extra):
        path.chmod(0o644)
    config_dir = "/usr/local/etc/jupyterhub"
    proxy_url, proxy_token = proxy
    hub = engine.containers.run(
        image, ["jupyterhub", "--config", f"{config_dir}/chart_config.py"],  # the chart's command
        detach=True, network_mode="host", user="1000", name=f"mlp-hubimg-{uuid.uuid4().hex[:8]}",
        labels={"mlplatform.test": "hub-image"},
        volumes={str(ROOT / "helm/mlplatform/files/chart_config.py"): {"bind": f"{config_dir}/chart_config.py", "mode": "ro"},
                 str(ROOT / "jupyter-config/jupyterhub_config.py"): {"bind": f"{config_dir}/jupyterhub_config.py", "mode": "ro"},
                 str(kube): {"bind": "/etc/mlp-test/kubeconfig", "mode": "ro"},
                 str(extra): {"bind": "/etc/mlp-test/extra_config.py", "mode": "ro"}},
        environment={
            "KUBECONFIG": "/etc/mlp-test/kubeconfig",
            "MLP_HUB_CONFIG": f"{config_dir}/jupyterhub_config.py",
            "MLP_HUB_EXTRA_CONFIG": "/etc/mlp-test/extra_config.py",
            "MLP_NAMESPACE": namespace, "MLP_HOME_CLAIM": PVC, "MLP_PRIORITY_CLASS": priority_class,
            "MLP_PLATFORM_URL": "http://mlplatform.test:8000",
            "MLP_HUB_PORT": str(hub_port), "MLP_HUB_URL": f"http://127.0.0.1:{hub_port}",
            "MLP_PROXY_API_URL": proxy_url, "CONFIGPROXY_AUTH_TOKEN": proxy_token,
            "JPY_COOKIE_SECRET": secrets.token_hex(32), "MLP_SERVICE_API_TOKEN": secrets.token_hex(16),
            "JUPYTERHUB_DB_URL": "sqlite:////srv/jupyterhub/hub.sqlite",
        })
    api = httpx.Client(base_url=f"http://127.0.0.1:{hub_port}/hub/api",
                       headers={"Authorization": f"token {admin_token}"}, timeout=15)
    try:
        def hub_up():
            hub.reload()
            if hub.status == "exited":
                pytest.fail(f"the hub exited:\n{hub.logs().decode()[-4000:]}")
            try:
                return api.get("/").status_code == 200
            except httpx.HTTPError:
                return False

        wait_until("the hub in the hub image to answer", hub_up, timeout=120)
        assert api.post("/users/ann").status_code == 201
        assert api.post("/groups/gpu-users", json={"users": ["ann"]}).status_code == 201
        started = api.post("/users/ann/server", json={"profile": "mlplatform", "environment": "gpu",
                                                      "hardware": "gpu-1"})
        assert started.status_code in (201, 202), started.text

        def notebook_pod():
            pods = get_json(namespace, "pods", "-l", "component=singleuser-server")["items"]
            return pods[0] if pods else None

        pod = wait_until("the notebook pod", notebook_pod, timeout=90)
        spec = pod["spec"]
        [container] = spec["containers"]
        assert container["image"] == "localhost/mlplatform/gpu:latest"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["priorityClassName"] == priority_class and spec["automountServiceAccountToken"] is False
        assert container["securityContext"]["runAsUser"] == 1000
        assert {"name": "home", "mountPath": "/home/mlp", "subPath": "home/ann"} in container["volumeMounts"]
        env = {e["name"]: e for e in container["env"]}
        assert env["MLP_URL"]["value"] == "http://mlplatform.test:8000"
        assert "value" not in env["MLP_TOKEN"]  # from the per-server Secret, never literal
        assert admin_token not in json.dumps(pod)
    finally:
        api.delete("/users/ann/server")
        api.close()
        hub.remove(force=True)
        engine.close()
        kubectl("-n", namespace, "delete", "pods", "-l", "component=singleuser-server", "--wait=false", check=False)
