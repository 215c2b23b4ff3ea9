"""The Kubernetes test rig (scripts/kube-up.sh, docs/kube-rig.md) does what later suites rely on.

A real kube-apiserver/etcd/controller-manager/scheduler (v1.34.4) with kwok fake nodes: Jobs
complete, GPU requests are scheduled (or refused) by the real scheduler, kwok fails a pod on
demand, RBAC answers, helm talks to the cluster. Driven through kubectl/helm in .testenv/bin,
with KUBECONFIG from MLP_TEST_KUBECONFIG (set by `make test` after `make kube-up`).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = ROOT / ".testenv" / "bin"
KUBE_VERSION = "v1.34.4"
HELM_VERSION = "v3.22.0"
GPU_NODE = "mlp-gpu-0"
CPU_NODE = "mlp-cpu-0"
# kwok's pod-container-running-failed stage (wired in by scripts/kube-build.sh's kwok config).
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"
# The delay kube-up.sh adds to kwok's default pod-complete stage.
COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"


class Kube:
    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.env = {**os.environ, "KUBECONFIG": kubeconfig}
        self.namespace = ""

    def run(self, tool: str, *args: str, input: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(BIN / tool), *args], input=input, capture_output=True,
                              text=True, env=self.env, timeout=timeout)
        if check and proc.returncode != 0:
            pytest.fail(f"{tool} {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def kubectl(self, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
        return self.run("kubectl", *args, **kw)

    def apply(self, manifest: dict[str, Any]) -> None:
        self.kubectl("-n", self.namespace, "apply", "-f", "-", input=json.dumps(manifest))

    def get(self, kind: str, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("-n", self.namespace, "get", kind, name, "-o", "json").stdout)

    def wait(self, what: str, condition: str, timeout: int = 60) -> None:
        proc = self.kubectl("-n", self.namespace, "wait", what, f"--for={condition}",
                            f"--timeout={timeout}s", check=False, timeout=timeout + 30)
        if proc.returncode != 0:
            described = self.kubectl("-n", self.namespace, "describe", what, check=False).stdout
            events = self.kubectl("-n", self.namespace, "get", "events", check=False).stdout
            pytest.fail(f"{what} never reached {condition}: {proc.stderr}\n{described}\n{events}")


@pytest.fixture(scope="module")
def kube() -> Any:
    kubeconfig = os.environ.get("MLP_TEST_KUBECONFIG")
    if not kubeconfig:
        pytest.fail("MLP_TEST_KUBECONFIG is not set: run via make test "
                    "(which runs make kube-up and exports it)")
    if not Path(kubeconfig).is_file():
        pytest.fail(f"MLP_TEST_KUBECONFIG={kubeconfig} does not exist: run via make test (make kube-up)")
    for tool in ("kubectl", "helm"):
        if not (BIN / tool).exists():
            pytest.fail(f"{BIN / tool} is missing: run via make test (make kube-up links it)")
    k = Kube(kubeconfig)
    k.namespace = f"mlp-test-{uuid.uuid4().hex[:8]}"
    k.kubectl("create", "namespace", k.namespace)
    # Pods need the namespace's default service account (ServiceAccount admission).
    k.wait("serviceaccount/default", "create", timeout=60)
    yield k
    k.kubectl("delete", "namespace", k.namespace, "--wait=false", check=False)


def busybox_pod_spec(**extra: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "busybox", "command": ["true"]}
    if "resources" in extra:
        container["resources"] = extra.pop("resources")
    return {"containers": [container], "restartPolicy": "Never", **extra}


def job(name: str, labels: dict[str, str] | None = None,
        annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"labels": labels or {}, "annotations": annotations or {}},
                "spec": busybox_pod_spec(),
            },
        },
    }


def gpu_pod(name: str, gpus: int) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": busybox_pod_spec(
            resources={"limits": {"nvidia.com/gpu": str(gpus)}},
            nodeSelector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
            tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        ),
    }


def job_pods(kube: Kube, job_name: str) -> list[dict[str, Any]]:
    out = kube.kubectl("-n", kube.namespace, "get", "pods", "-l", f"job-name={job_name}", "-o", "json")
    return json.loads(out.stdout)["items"]


def test_server_and_client_are_v1_34_4(kube: Kube) -> None:
    version = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert version["serverVersion"]["gitVersion"] == KUBE_VERSION
    assert (version["serverVersion"]["major"], version["serverVersion"]["minor"]) == ("1", "34")
    assert version["clientVersion"]["gitVersion"] == KUBE_VERSION


def test_kwok_nodes_are_ready_with_their_capacity(kube: Kube) -> None:
    nodes = {n["metadata"]["name"]: n
             for n in json.loads(kube.kubectl("get", "nodes", "-o", "json").stdout)["items"]}
    assert {CPU_NODE, GPU_NODE} <= set(nodes)
    for node in (nodes[CPU_NODE], nodes[GPU_NODE]):
        ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
        assert ready and ready[0]["status"] == "True", node["status"]["conditions"]
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"
        assert node["status"]["allocatable"]["cpu"] == "16"
        assert node["status"]["allocatable"]["memory"] == "64Gi"
    gpu = nodes[GPU_NODE]
    assert gpu["status"]["allocatable"]["nvidia.com/gpu"] == "4"
    assert gpu["metadata"]["labels"]["cloud.google.com/gke-accelerator"] == "nvidia-tesla-t4"
    assert gpu["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"
    assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in gpu["spec"]["taints"]
    assert "nvidia.com/gpu" not in nodes[CPU_NODE]["status"]["allocatable"]


def test_kwok_renews_each_nodes_lease_like_a_kubelet(kube: Kube) -> None:
    """Without a renewed Lease the node lifecycle controller marks the nodes NotReady once the
    grace period (5 min here) passes, and with them every pod on them NotReady for good (kwok
    re-readies the nodes, not the pods): a Deployment made earlier then never reads available."""
    from datetime import datetime, timezone

    leases = {item["metadata"]["name"]: item["spec"] for item in json.loads(
        kube.kubectl("-n", "kube-node-lease", "get", "leases", "-o", "json").stdout)["items"]}
    for node in (CPU_NODE, GPU_NODE):
        assert node in leases, f"no Lease for {node} in kube-node-lease (kwok runs no lease controller)"
        spec = leases[node]
        renewed = datetime.strptime(spec["renewTime"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc)
        age = (datetime.now(timezone.utc) - renewed).total_seconds()
        assert age < spec["leaseDurationSeconds"], f"{node}'s Lease was last renewed {age:.0f} s ago"


def test_rbac_answers_auth_can_i(kube: Kube) -> None:
    admin = kube.kubectl("auth", "can-i", "create", "jobs.batch", "-n", kube.namespace)
    assert admin.stdout.strip() == "yes"
    # A namespace's default service account has no rights under RBAC: a real "no" (exit 1).
    sa = kube.kubectl("auth", "can-i", "create", "jobs.batch", "-n", kube.namespace,
                      f"--as=system:serviceaccount:{kube.namespace}:default", check=False)
    assert (sa.returncode, sa.stdout.strip()) == (1, "no"), sa


def test_job_completes_on_the_cpu_node(kube: Kube) -> None:
    kube.apply(job("ok"))
    kube.wait("job/ok", "condition=Complete", timeout=90)
    assert kube.get("job", "ok")["status"]["succeeded"] == 1
    [pod] = job_pods(kube, "ok")
    assert pod["status"]["phase"] == "Succeeded"
    # The GPU node's taint keeps plain pods off it.
    assert pod["spec"]["nodeName"] == CPU_NODE


def test_job_pod_runs_for_the_annotated_delay_then_completes(kube: Kube) -> None:
    kube.apply(job("slow", annotations={COMPLETE_DELAY: "4s"}))
    deadline = time.monotonic() + 60
    while True:
        pods = job_pods(kube, "slow")
        if pods and pods[0]["status"].get("phase") == "Running":
            break
        assert time.monotonic() < deadline, pods
        time.sleep(0.3)
    running_seen = time.monotonic()
    assert not kube.get("job", "slow")["status"].get("succeeded")
    kube.wait("job/slow", "condition=Complete", timeout=60)
    [pod] = job_pods(kube, "slow")
    assert pod["status"]["phase"] == "Succeeded"
    assert time.monotonic() - running_seen >= 2.5


def test_gpu_pod_lands_on_the_gpu_node(kube: Kube) -> None:
    kube.apply(gpu_pod("one-gpu", 1))
    kube.wait("pod/one-gpu", "condition=Ready", timeout=60)
    pod = kube.get("pod", "one-gpu")
    assert pod["spec"]["nodeName"] == GPU_NODE
    assert pod["status"]["phase"] == "Running"


def test_pod_wanting_more_gpus_than_any_node_stays_pending(kube: Kube) -> None:
    kube.apply(gpu_pod("eight-gpus", 8))
    kube.wait("pod/eight-gpus",
              "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}=Unschedulable",
              timeout=60)
    pod = kube.get("pod", "eight-gpus")
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    [cond] = [c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled"]
    assert cond["status"] == "False"
    assert "Insufficient nvidia.com/gpu" in cond["message"], cond


def test_kwok_fails_a_labelled_job_pod_on_demand(kube: Kube) -> None:
    """The recipe in docs/kube-rig.md: label the pod template, optionally pick reason/exit code."""
    kube.apply(job("fails", labels={FAIL_LABEL: "true"},
                   annotations={f"{FAIL_LABEL}/reason": "OOMKilled",
                                f"{FAIL_LABEL}/exit-code": "137",
                                f"{FAIL_LABEL}/message": "out of memory (kwok)"}))
    kube.wait("job/fails", "condition=Failed", timeout=90)
    assert kube.get("job", "fails")["status"].get("failed") == 1
    [pod] = job_pods(kube, "fails")
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert terminated["exitCode"] == 137
    assert terminated["reason"] == "OOMKilled"


def test_helm_installs_a_chart(kube: Kube, tmp_path: Path) -> None:
    helm_env = {"HELM_CACHE_HOME": str(tmp_path / "cache"), "HELM_CONFIG_HOME": str(tmp_path / "config"),
                "HELM_DATA_HOME": str(tmp_path / "data")}
    kube.env.update(helm_env)
    try:
        version = kube.run("helm", "version", "--template", "{{.Version}}").stdout.strip()
        assert version == HELM_VERSION
        kube.run("helm", "create", str(tmp_path / "demo"))
        # `helm create`'s chart: a Deployment, Service, ServiceAccount; kwok makes its pod Ready.
        kube.run("helm", "install", "demo", str(tmp_path / "demo"), "-n", kube.namespace,
                 "--wait", "--timeout", "240s", timeout=300)
        status = json.loads(kube.run("helm", "status", "demo", "-n", kube.namespace, "-o", "json").stdout)
        assert status["info"]["status"] == "deployed"
        deploy = kube.get("deployment", "demo")
        assert deploy["status"].get("availableReplicas") == 1
    finally:
        for key in helm_env:
            kube.env.pop(key, None)
