"""The hub's KubeSpawner with the platform's profiles, against the real control plane (kwok nodes).

Real KubeSpawner objects (tests/hubtest.py: jupyterhub's own User over an in-memory hub
database) go through KubeSpawner's own start path: user options → profile → pod manifest → pod
created through the Kubernetes API → scheduled and Running on a kwok node.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import pytest

from hubtest import Hubless, hub_config, stop_reflectors
from kubetest import PVC, kubeconfig, kubectl, namespace_with_claim
from mlplatform_server.backends.kubernetes.manifests import credentials_secret_name
from mlplatform_server.config import load_config
from mlplatform_server.errors import ConfigError

GPU_NODE = "mlp-gpu-0"


@pytest.fixture(scope="module")
def namespace() -> Iterator[str]:
    with namespace_with_claim("mlp-hub") as ns:
        yield ns


@pytest.fixture
async def hub() -> Any:
    yield Hubless(kubeconfig())
    await stop_reflectors()


def pod_json(ns: str, name: str) -> dict[str, Any]:
    return json.loads(kubectl("-n", ns, "get", "pod", name, "-o", "json").stdout)


async def test_gpu_1_gives_a_gpu_pod_on_the_gpu_node(namespace: str, hub: Hubless) -> None:
    platform = load_config()
    ann = hub.user("ann", groups=("gpu-users",))
    spawner = hub.spawner(ann, hub_config(platform, namespace, PVC))
    form = await spawner._render_options_form_dynamically(spawner)
    assert "gpu-1" in form and "One GPU" in form and "cpu-small" in form
    # what the submitted form becomes (KubeSpawner's own parsing)
    spawner.user_options = spawner.options_from_form({
        "profile": ["mlplatform"], "profile-option-mlplatform--environment": ["python"],
        "profile-option-mlplatform--hardware": ["gpu-1"]})
    await spawner.start()
    try:
        pod = pod_json(namespace, spawner.pod_name)
        spec = pod["spec"]
        [container] = spec["containers"]
        assert container["image"] == "localhost/mlplatform/python:latest"
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["limits"]["cpu"] == "8"
        assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in spec["tolerations"]
        assert spec["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
        assert container["envFrom"] == [{"secretRef": {"name": credentials_secret_name("ann"), "optional": True}}]
        assert spec["automountServiceAccountToken"] is False
        assert spec["nodeName"] == GPU_NODE
        assert pod["status"]["phase"] == "Running"
        # home: the shared RWX claim, the user's own subPath
        [home] = [v for v in spec["volumes"] if v["name"] == "home"]
        assert home["persistentVolumeClaim"]["claimName"] == PVC
        assert {"name": "home", "mountPath": "/home/mlp", "subPath": "home/ann"} in container["volumeMounts"]
        # the images' user mlp (uid 1000), never root
        assert container["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["fsGroup"] == 1000
        assert container["securityContext"]["runAsNonRoot"] is True
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        # mlp preconfigured; no token is a literal in the pod spec
        env = {e["name"]: e for e in container["env"]}
        assert env["MLP_URL"]["value"] == "http://mlplatform.test:8000"
        assert env["MLP_TENSORBOARD"]["value"] == "1"  # python has tensorboard: true: the launcher item
        for name in ("MLP_TOKEN", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
            assert "value" not in env[name]
            assert env[name]["valueFrom"]["secretKeyRef"] == {"name": spawner.token_secret_name, "key": name}
        assert spawner.api_token not in json.dumps(pod)
        secret = json.loads(kubectl("-n", namespace, "get", "secret", spawner.token_secret_name, "-o", "json").stdout)
        assert base64.b64decode(secret["data"]["MLP_TOKEN"]).decode() == spawner.api_token
    finally:
        await spawner.stop(now=True)
    assert kubectl("-n", namespace, "get", "secret", spawner.token_secret_name, check=False).returncode != 0
    # the same spawner object, next spawn on a CPU size: no GPU or GPU-node leftovers
    spawner.user_options = {"profile": "mlplatform", "hardware": "cpu-small"}
    await spawner.load_user_options()
    assert "nvidia.com/gpu" not in spawner.extra_resource_limits
    assert spawner.node_selector == {} and spawner.tolerations == []


async def test_user_outside_gpu_users_cannot_choose_gpu_1(namespace: str, hub: Hubless) -> None:
    platform = load_config()
    bob = hub.user("bob", groups=("staff",))
    spawner = hub.spawner(bob, hub_config(platform, namespace, PVC))
    form = await spawner._render_options_form_dynamically(spawner)
    assert "cpu-small" in form and "gpu-1" not in form and "One GPU" not in form
    spawner.user_options = {"profile": "mlplatform", "hardware": "gpu-1"}  # as through the REST API
    with pytest.raises(ConfigError, match="'gpu-1' is only for members of the group\\(s\\) gpu-users; user 'bob'"):
        await spawner.start()
    pods = json.loads(kubectl("-n", namespace, "get", "pods", "-o", "json").stdout)["items"]
    assert [p["metadata"]["name"] for p in pods if p["metadata"]["name"] == spawner.pod_name] == []
