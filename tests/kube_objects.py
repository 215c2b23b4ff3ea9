"""Kubernetes objects shaped as the API server sends them, used across the test suites and the
benchmarks (as tests/notebooks.py is for notebooks)."""

from __future__ import annotations

from typing import Any

from mlplatform_server.backends.kubernetes import manifests as mf


def training_pod(name: str, job: str, phase: str = "Running", **labels: str) -> dict[str, Any]:
    """A Pod shaped like a training run's as the API server sends it: ≈ 30 nested dicts and lists."""
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "ns", "resourceVersion": "1", "uid": f"uid-{name}",
            "labels": {**mf.MANAGED_BY, mf.JOB_NAME_LABEL: job, **labels},
            "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job, "controller": True}],
            "managedFields": [{"manager": "kube-controller-manager", "operation": "Update",
                               "fieldsV1": {"f:metadata": {"f:labels": {".": {}}}}} for _ in range(3)],
        },
        "spec": {
            "containers": [{
                "name": "main", "image": "registry/model@sha256:" + "0" * 64,
                "env": [{"name": f"VAR_{i}", "value": str(i)} for i in range(6)],
                "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
                "securityContext": {"runAsNonRoot": True, "capabilities": {"drop": ["ALL"]},
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "mlp-data"}}],
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
        "status": {
            "phase": phase,
            "conditions": [{"type": t, "status": "True"} for t in ("PodScheduled", "Initialized", "Ready")],
            "containerStatuses": [{"name": "main", "state": {"running": {"startedAt": "2026-11-28T10:00:00Z"}}}],
        },
    }
