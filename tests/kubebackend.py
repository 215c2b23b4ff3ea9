"""What the kubernetes backend suites share: hardware sizes, a run spec, waiting for a state, and
the fixtures of one namespace with a claim and a backend on it (import them into a test module:
``from kubebackend import namespace, data_dir, backend``).

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from kubetest import PVC, kubeconfig, namespace_with_claim
from mlplatform_server.backends.base import Hardware, RunSpec, RunState
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend

DIGEST = "sha256:" + "cd" * 32
GPU1 = Hardware(
    name="gpu-1", cpu=8, memory="32Gi", gpus=1, gpu_type="nvidia-tesla-t4",
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
)
GPU8 = Hardware(name="gpu-8", cpu=8, memory="32Gi", gpus=8,
                node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"})
CPU = Hardware(name="cpu-small", cpu=1, memory="2Gi")


@pytest.fixture(scope="module")
def namespace(tmp_path_factory: pytest.TempPathFactory) -> Any:
    with namespace_with_claim("mlp-kb") as ns:
        yield ns


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"


@pytest.fixture
async def backend(namespace: str, data_dir: Path) -> Any:
    b = KubernetesBackend(namespace, kubeconfig(), mf.ArtifactStore(pvc=PVC, root=data_dir),
                          api_url="http://mlplatform.mlp-system.svc:8585")
    yield b
    await b.close()


def run_spec(data_dir: Path, hardware: Hardware = GPU1, token: str | None = None, **kw: Any) -> RunSpec:
    run_id = uuid.uuid4().hex[:12]
    run_dir = data_dir / "runs" / run_id
    module = data_dir / "models" / "iris" / "v1" / "model.py"
    values: dict[str, Any] = dict(
        run_id=run_id, action="train", user="alice@example.com", model="iris", version="v1",
        module_path=module, run_dir=run_dir, hyperparameters={}, hardware=hardware,
        image=f"registry.local:5000/mlp/env-gpu:1@{DIGEST}",
        env={"MLP_RUN_ID": run_id, "MLP_URL": "http://127.0.0.1:8585", "MLP_MODULE_PATH": str(module),
             "MLP_ARTIFACTS": str(run_dir / "artifacts"), "MLP_RESULT_PATH": str(run_dir / "result.json"),
             "MLP_HYPERPARAMETERS": "{}", "MLP_RUN_TOKEN": token or f"tok-{uuid.uuid4().hex}"},
    )
    values.update(kw)
    return RunSpec(**values)


async def wait_state(backend: KubernetesBackend, ref: str, spec: RunSpec, want: RunState, timeout: float = 60,
                     reason: str | None = None):
    deadline = time.monotonic() + timeout
    while True:
        status = await backend.status(ref, spec)
        if status.state == want and (reason is None or reason in (status.reason or "")):
            return status
        assert time.monotonic() < deadline, f"{ref} is {status}, never {want} {reason or ''}"
        await asyncio.sleep(0.3)


async def job_pods(backend: KubernetesBackend, ref: str) -> list[dict[str, Any]]:
    return await backend.client.list("v1", "Pod", backend.namespace,
                                     label_selector=f"batch.kubernetes.io/job-name={ref}")
