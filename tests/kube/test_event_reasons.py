"""Human reasons from Events when pod conditions give none, against the real control plane: a Job
whose pod cannot be created (a PriorityClass that does not exist: the Priority admission plugin
refuses the pod, the Job controller records a FailedCreate warning) reads as pending with that reason.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

from kubebackend import CPU, data_dir, namespace, run_spec, wait_state  # noqa: F401 (fixtures)
from kubetest import PVC, kubeconfig

from mlplatform_server.backends.base import RunState
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend



async def test_pod_that_cannot_be_created_reads_as_pending_with_the_job_controllers_warning(namespace, data_dir):
    backend = KubernetesBackend(namespace, kubeconfig(), mf.ArtifactStore(pvc=PVC, root=data_dir),
                                priority_class="mlp-no-such-priority")
    try:
        spec = run_spec(data_dir, hardware=CPU)
        ref = await backend.submit(spec)
        status = await wait_state(backend, ref, spec, RunState.PENDING, timeout=60, reason="FailedCreate")
        assert status.reason.startswith("the Job cannot create its pod: FailedCreate: "), status
        assert "mlp-no-such-priority" in status.reason, status
        await backend.cancel(ref, spec)
    finally:
        await backend.close()
