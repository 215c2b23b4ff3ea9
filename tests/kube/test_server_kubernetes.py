"""`mlp server --backend kubernetes` end to end against the real control plane of scripts/kube-up.sh
(kwok nodes mlp-cpu-0 and mlp-gpu-0 with 4 nvidia.com/gpu and a GPU taint; kwok completes Job pods,
it runs no code). Through the `mlp` CLI: the spine's notebook trains on gpu-1, a run that cannot be
scheduled is cancelled, a deployment is made, and a `kill -9` + restart of the server keeps every state.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from notebooks import realistic_notebook
from kubetest import PVC, get_json, kubeconfig, kubectl, namespace_with_claim, pod_token
from support import wait_until

ROOT = Path(__file__).resolve().parents[2]
GPU_NODE = "mlp-gpu-0"
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


@pytest.fixture
def namespace() -> Any:
    """A fresh namespace with an RWX claim bound to a volume (kwok never mounts it)."""
    with namespace_with_claim("mlp-srv") as ns:
        yield ns


def run_of(server: Any, run_id: str) -> dict[str, Any]:
    with server.api() as api:
        return api.get(f"/runs/{run_id}").json()


def test_server_on_kubernetes_trains_cancels_deploys_and_survives_kill_9(mlp_server_factory, namespace,
                                                                           platform_yaml, tmp_path):
    server = mlp_server_factory(
        backend="kubernetes", config=platform_yaml,
        extra_args=["--namespace", namespace, "--kubeconfig", kubeconfig(), "--pvc", PVC],
    )
    with server.api() as api:
        assert api.get("/health").json()["backend"] == "kubernetes"

    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    server.mlp_json("models", "save", str(nb), "--name", "iris")

    # gpu-1: a Job whose pod asks for one GPU, tolerates the taint, lands on the GPU node, no API token.
    done = server.mlp_json("train", "iris", "--hardware", "gpu-1", "--hp", "C=0.5", "--wait")
    assert done["status"] == "succeeded", done
    job_name = f"mlp-run-{done['id']}"
    job = get_json(namespace, "job", job_name)
    pods = get_json(namespace, "pods", "-l", f"batch.kubernetes.io/job-name={job_name}")["items"]
    assert pods, "the Job has no pod"
    for spec in (job["spec"]["template"]["spec"], pods[-1]["spec"]):
        container = spec["containers"][0]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
        assert GPU_TOLERATION in spec["tolerations"]
        assert spec["automountServiceAccountToken"] is False
        tokens = [v for v in spec["volumes"] if v.get("projected")]
        assert tokens == [{"name": "mlp-run-token", "projected": {"defaultMode": 420, "sources": [
            {"serviceAccountToken": {"audience": "mlplatform", "expirationSeconds": 3600, "path": "token"}}]}}]
    assert pods[-1]["spec"]["nodeName"] == GPU_NODE
    assert pods[-1]["status"]["phase"] == "Succeeded"
    assert server.token not in json.dumps(job) + json.dumps(pods)

    # gpu-8 fits no node: pending with the scheduler's reason.
    stuck = server.mlp_json("train", "iris", "--hardware", "gpu-8")
    kept = server.mlp_json("train", "iris", "--hardware", "gpu-8")
    # Recorded with the backend's first reason (the watches then skip the untouched Job's events).
    assert stuck["status"] == "pending" and stuck["reason"] == "waiting for the Job's pod to be created", stuck
    for run in (stuck, kept):
        pending = wait_until("a scheduling reason", lambda r=run: (lambda x: x if x["status"] == "pending"
                             and "nvidia.com/gpu" in (x["reason"] or "") else None)(run_of(server, r["id"])))
        assert "Insufficient nvidia.com/gpu" in pending["reason"], pending
    # Its pod reports metrics with the token the kubelet would project (made here by the real
    # TokenRequest API, bound to that pod): accepted for its own run only.
    [kept_pod] = get_json(namespace, "pods", "-l", f"batch.kubernetes.io/job-name=mlp-run-{kept['id']}")["items"]
    run_token = pod_token(namespace, kept_pod, "mlplatform")
    metric = {"metrics": [{"name": "loss", "value": 0.25, "step": 1}]}
    with server.api(token=run_token) as as_pod:
        assert as_pod.post(f"/runs/{kept['id']}/metrics", json=metric).status_code == 201
        assert as_pod.post(f"/runs/{done['id']}/metrics", json=metric).status_code == 404  # not its run
        assert as_pod.get("/runs").status_code == 403
    with server.api(token=pod_token(namespace, kept_pod, "https://kubernetes.default.svc.cluster.local")) as other:
        assert other.post(f"/runs/{kept['id']}/metrics", json=metric).status_code == 401
    assert [(m["name"], m["value"]) for m in server.mlp_json("runs", "metrics", kept["id"])["items"]] \
        == [("loss", 0.25)]
    assert not get_json(namespace, "secrets", "-l", "app.kubernetes.io/managed-by=mlplatform")["items"]

    # cancel deletes the Job.
    cancelled = server.mlp_json("runs", "cancel", stuck["id"])
    assert cancelled["status"] == "cancelled", cancelled
    gone = (f"job/mlp-run-{stuck['id']}",)
    for what in gone:
        wait_until(f"{what} deleted", lambda w=what: "NotFound" in kubectl("-n", namespace, "get", w,
                                                                               check=False).stderr)

    # deploy: a Deployment probed on /ping and a Service.
    dep = server.mlp_json("deploy", "iris", "--run", done["id"], "--hardware", "cpu-small", "--wait")
    assert dep["status"] == "ready", dep
    deployment = get_json(namespace, "deployment", "mlp-dep-iris")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ping"
    assert container["livenessProbe"]["httpGet"]["path"] == "/ping"
    service = get_json(namespace, "service", "mlp-dep-iris")
    assert service["spec"]["selector"].items() <= deployment["spec"]["template"]["metadata"]["labels"].items()

    # kill -9 and restart: every state stays true.
    generation = deployment["metadata"]["generation"]
    server.kill()
    server.start()
    time.sleep(3.0)  # several reconcile passes of the new server
    assert run_of(server, done["id"])["status"] == "succeeded"
    assert run_of(server, stuck["id"])["status"] == "cancelled"
    after = run_of(server, kept["id"])
    assert after["status"] == "pending" and "Insufficient nvidia.com/gpu" in after["reason"], after
    # The deployment reads ready again (within a bounded wait, for the Deployment controller's
    # status), and the restart rolled nothing out. (This once failed when kwok renewed no node
    # Leases: every 5 minutes all pods were marked NotReady for good; docs/kube-rig.md.)
    deadline = time.monotonic() + 60
    while (shown := server.mlp_json("deployments", "show", "iris"))["status"] != "ready":
        now = get_json(namespace, "deployment", "mlp-dep-iris")
        assert time.monotonic() < deadline, (shown, now["metadata"]["generation"], now.get("status"))
        time.sleep(0.5)
    assert get_json(namespace, "deployment", "mlp-dep-iris")["metadata"]["generation"] == generation
    get_json(namespace, "job", f"mlp-run-{kept['id']}")
    get_json(namespace, "job", job_name)
    assert "NotFound" in kubectl("-n", namespace, "get", gone[0], check=False).stderr

    server.mlp("runs", "cancel", kept["id"])
    server.mlp("deployments", "delete", "iris")
    wait_until("the Deployment deleted", lambda: "NotFound" in kubectl(
        "-n", namespace, "get", "deployment/mlp-dep-iris", check=False).stderr)


@pytest.mark.parametrize("args, message", [
    (["--pvc", PVC], "error: the kubernetes backend needs a namespace: --namespace NS"),
    (["--namespace", "ns", "--pvc", PVC, "--kubeconfig", "/nonexistent/kubeconfig"],
     "error: kubernetes backend: cannot read kubeconfig /nonexistent/kubeconfig: No such file or directory"),
    (["--namespace", "ns", "--kubeconfig", "KUBECONFIG"], "error: the kubernetes backend needs one artifact store"),
])
def test_server_kubernetes_config_errors_are_one_line(tmp_path, args, message):
    args = [kubeconfig() if a == "KUBECONFIG" else a for a in args]
    proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", "server", "--backend", "kubernetes",
                           "--data-dir", str(tmp_path / "data"), "--port", "0", *args],
                          capture_output=True, text=True, timeout=60, cwd=ROOT,
                          env={**os.environ, "MLP_TOKEN": "x"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("text, problem", [
    ("current-context: a\ncontexts:\n- name: a\n", "is malformed: KeyError('context')"),
    ("contexts: [1]\n", "is malformed: AttributeError("),
    ("clusters: [\n", "is not valid YAML"),
])
def test_server_kubernetes_malformed_kubeconfig_is_one_line(tmp_path, text, problem):
    """A malformed kubeconfig is a one-line error naming the file (KubeConfig turns every parse
    failure into a ValueError; the server does not catch TypeError or KeyError around the backend)."""
    config = tmp_path / "kubeconfig"
    config.write_text(text)
    proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", "server", "--backend", "kubernetes",
                           "--data-dir", str(tmp_path / "data"), "--port", "0", "--namespace", "ns", "--pvc", PVC,
                           "--kubeconfig", str(config)],
                          capture_output=True, text=True, timeout=60, cwd=ROOT, env={**os.environ, "MLP_TOKEN": "x"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: kubernetes backend: kubeconfig {config} "), proc.stderr
    assert problem in errors[0] and "Traceback" not in proc.stderr
