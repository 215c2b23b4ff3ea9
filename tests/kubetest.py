"""Helpers for the suites that run against the real control plane (`make kube-up`)."""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from mlplatform_server.backends.kubernetes.manifests import TOKEN_AUDIENCE

ROOT = Path(__file__).resolve().parents[1]
KUBECTL = ROOT / ".testenv" / "bin" / "kubectl"
PVC = "mlp-data"


def kubeconfig() -> str:
    path = os.environ.get("MLP_TEST_KUBECONFIG")
    if not path:
        pytest.fail("MLP_TEST_KUBECONFIG is not set: run via make test (make kube-up exports it)")
    if not Path(path).is_file():
        pytest.fail(f"MLP_TEST_KUBECONFIG={path} does not exist: run make kube-up")
    if not KUBECTL.exists():
        pytest.fail(f"{KUBECTL} is missing: run make kube-up")
    return path


def kubectl(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(KUBECTL), *args], input=input, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "KUBECONFIG": kubeconfig()})
    if check and proc.returncode != 0:
        pytest.fail(f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def get_json(ns: str, *what: str) -> dict[str, Any]:
    return json.loads(kubectl("-n", ns, "get", *what, "-o", "json").stdout)


def absent(ns: str, what: str) -> bool:
    return "NotFound" in kubectl("-n", ns, "get", what, check=False).stderr


def pod_token(ns: str, pod: dict[str, Any], audience: str = TOKEN_AUDIENCE) -> str:
    """What the kubelet projects into ``pod``: a service-account token bound to it."""
    return kubectl("-n", ns, "create", "token", pod["spec"].get("serviceAccountName") or "default",
                   "--audience", audience, "--bound-object-kind", "Pod",
                   "--bound-object-name", pod["metadata"]["name"],
                   "--bound-object-uid", pod["metadata"]["uid"]).stdout.strip()


def claim_manifests(ns: str, claim: str = PVC) -> dict:
    """A RWX PersistentVolume bound to the claim `claim` in `ns`: shared storage as NFS/EFS would be."""
    pv = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-data"},
        "spec": {"capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": f"/srv/{ns}"}, "claimRef": {"namespace": ns, "name": claim}},
    }
    pvc = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": claim, "namespace": ns},
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": f"{ns}-data",
                 "resources": {"requests": {"storage": "10Gi"}}},
    }
    return {"apiVersion": "v1", "kind": "List", "items": [pv, pvc]}


@contextmanager
def namespace_with_claim(prefix: str) -> Iterator[str]:
    """A fresh namespace whose claim PVC is bound to a RWX volume (shared storage; kwok never mounts it)."""
    kubeconfig()
    ns = f"{prefix}-{uuid.uuid4().hex[:8]}"
    kubectl("create", "namespace", ns)
    # Pods are refused until the namespace's default ServiceAccount exists (slow under load).
    kubectl("-n", ns, "wait", "serviceaccount/default", "--for=create", "--timeout=60s")
    kubectl("apply", "-f", "-", input=json.dumps(claim_manifests(ns)))
    kubectl("-n", ns, "wait", f"pvc/{PVC}", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
    try:
        yield ns
    finally:
        kubectl("delete", "namespace", ns, "--wait=false", check=False)
        kubectl("delete", "pv", f"{ns}-data", "--wait=false", check=False)
