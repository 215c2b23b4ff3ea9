"""The kubernetes backend against the real control plane of scripts/kube-up.sh (kube-apiserver,
controller-manager, scheduler v1.34 with kwok nodes: kwok completes or fails pods, it runs no code).

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it. Each module run
gets a fresh namespace with an RWX PersistentVolume + Claim standing in for shared storage.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlplatform_server.backends.base import Autoscale, DeploymentSpec, Hardware, RunSpec, RunState
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend
from mlplatform_server.backends.kubernetes.client import ApiError, KubeClient
from kubebackend import CPU, DIGEST, GPU1, GPU8, backend, data_dir, job_pods, namespace, run_spec, wait_state  # noqa: F401 (fixtures)
from kubetest import PVC, kubeconfig, kubectl

ROOT = Path(__file__).resolve().parents[2]
GPU_NODE = "mlp-gpu-0"
FAIL_LABEL = "pod-container-running-failed.stage.kwok.x-k8s.io"
COMPLETE_DELAY = "pod-complete.stage.kwok.x-k8s.io/delay"
async def test_gpu1_run_lands_on_the_gpu_node_without_api_token_and_succeeds(backend, data_dir):
    token = f"secret-token-{uuid.uuid4().hex}"
    spec = run_spec(data_dir, token=token)
    ref = await backend.submit(spec)
    assert ref == f"mlp-run-{spec.run_id}"
    job = await backend.client.get("batch/v1", "Job", backend.namespace, ref)
    assert token not in json.dumps(job)
    assert job["metadata"]["labels"]["mlplatform.io/user"].startswith("alice-example.com-")
    await wait_state(backend, ref, spec, RunState.SUCCEEDED)
    [pod] = await job_pods(backend, ref)
    assert token not in json.dumps(pod)
    pod_spec = pod["spec"]
    assert pod_spec["nodeName"] == GPU_NODE
    assert pod_spec["automountServiceAccountToken"] is False
    # The only token is the run's: projected for the platform's audience, not the API server's.
    projected = [v["projected"]["sources"] for v in pod_spec["volumes"] if v.get("projected")]
    assert projected == [[{"serviceAccountToken": {"audience": mf.TOKEN_AUDIENCE, "expirationSeconds": 3600,
                                                   "path": "token"}}]]
    [container] = pod_spec["containers"]
    assert container["resources"]["requests"]["nvidia.com/gpu"] == "1"
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod_spec["tolerations"]
    assert container["image"] == f"registry.local:5000/mlp/env-gpu@{DIGEST}"
    assert pod_spec["securityContext"]["runAsNonRoot"] is True
    # Starting a run makes nothing but its Job: no per-run Secret.
    secrets = await backend.client.list("v1", "Secret", backend.namespace,
                                        label_selector=f"mlplatform.io/run-id={spec.run_id}")
    assert secrets == []


async def pod_token(backend: KubernetesBackend, pod: dict[str, Any], audience: str,
                    client: KubeClient | None = None) -> str:
    """A token bound to ``pod`` from the real TokenRequest API, as the kubelet projects it
    (asked through ``client``, default the backend's)."""
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
            "spec": {"audiences": [audience], "expirationSeconds": 600,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod["metadata"]["name"],
                                        "uid": pod["metadata"]["uid"]}}}
    answer = await (client or backend.client).request(
        "POST", f"/api/v1/namespaces/{backend.namespace}/serviceaccounts/default/token", json=body)
    return answer["status"]["token"]


async def test_run_pods_authenticate_with_their_projected_token(backend, data_dir):
    """The token the kubelet projects into a run's pod (audience mlplatform) identifies that run's
    Job through a real TokenReview; the API server itself refuses it; other tokens are refused."""
    first, second = run_spec(data_dir, CPU), run_spec(data_dir, CPU)
    refs = [await backend.submit(first), await backend.submit(second)]
    pods = []
    for ref in refs:
        for _ in range(120):
            found = await job_pods(backend, ref)
            if found:
                pods.append(found[0])
                break
            await asyncio.sleep(0.5)
    assert len(pods) == 2
    tokens = [await pod_token(backend, pod, mf.TOKEN_AUDIENCE) for pod in pods]
    assert [await backend.authenticate_workload(t) for t in tokens] == refs
    # A token for the API server's audience, garbage, and a platform-style token are not run tokens.
    api_token = await pod_token(backend, pods[0], "https://kubernetes.default.svc.cluster.local")
    assert await backend.authenticate_workload(api_token) is None
    assert await backend.authenticate_workload("not.a.jwt") is None
    assert await backend.authenticate_workload("plain-platform-token") is None
    # The run token cannot be used against the Kubernetes API.
    config = backend.client.config
    async with httpx.AsyncClient(verify=False) as raw:  # no client certificate: the token alone
        answer = await raw.get(f"{config.server}/api/v1/namespaces/{backend.namespace}/pods",
                               headers={"Authorization": f"Bearer {tokens[0]}"})
    assert answer.status_code == 401


async def test_submit_is_idempotent(backend, data_dir):
    spec = run_spec(data_dir, CPU)
    assert await backend.submit(spec) == await backend.submit(spec)
    jobs = await backend.client.list("batch/v1", "Job", backend.namespace,
                                     label_selector=f"mlplatform.io/run-id={spec.run_id}")
    assert len(jobs) == 1


async def test_status_survives_a_new_backend_instance(namespace, backend, data_dir):
    spec = run_spec(data_dir, CPU)
    ref = await backend.submit(spec)
    await wait_state(backend, ref, spec, RunState.SUCCEEDED)
    fresh = KubernetesBackend(namespace, kubeconfig(), pvc=PVC, data_dir=str(data_dir))
    try:
        assert (await fresh.status(ref, spec)).state == RunState.SUCCEEDED
    finally:
        await fresh.close()


async def test_cancel_deletes_the_job(backend, data_dir):
    spec = run_spec(data_dir, CPU)
    manifest = backend.job_manifest(spec)
    manifest["spec"]["template"]["metadata"]["annotations"][COMPLETE_DELAY] = "300s"
    backend.job_manifest = lambda _spec: manifest  # a run that keeps running
    ref = await backend.submit(spec)
    await wait_state(backend, ref, spec, RunState.RUNNING)
    # The pod is there but its node's kubelet cannot be reached (kwok serves no logs: the API server
    # answers 500): with a copy kept in the run directory, logs read that copy instead of failing.
    (spec.run_dir / "logs.txt").parent.mkdir(parents=True, exist_ok=True)
    (spec.run_dir / "logs.txt").write_text("MLP_START action=train\n")
    assert await backend.view.listed_pods(ref, backend.namespace)
    assert [c async for c in backend.logs(ref, spec)] == ["MLP_START action=train\n"]
    await backend.cancel(ref, spec)
    await backend.cancel(ref, spec)  # idempotent
    assert await backend.client.get_or_none("batch/v1", "Job", backend.namespace, ref) is None
    status = await backend.status(ref, spec)
    assert (status.state, status.reason) == (RunState.FAILED, "the run's Job was deleted outside the platform")
    # With the pod gone (or still being deleted), logs come from the copy kept in the run directory.
    assert [c async for c in backend.logs(ref, spec)] == ["MLP_START action=train\n"]
    assert [c async for c in backend.logs(ref, spec, follow=True)] == ["MLP_START action=train\n"]


async def test_eight_gpus_stay_pending_with_the_schedulers_reason(backend, data_dir):
    spec = run_spec(data_dir, GPU8)
    ref = await backend.submit(spec)
    status = await wait_state(backend, ref, spec, RunState.PENDING, reason="Insufficient nvidia.com/gpu")
    assert status.reason.startswith("cannot be scheduled: 0/2 nodes are available"), status.reason
    await backend.cancel(ref, spec)


def failing(backend: KubernetesBackend, spec: RunSpec, exit_code: int, reason: str, message: str) -> None:
    manifest = backend.job_manifest(spec)
    meta = manifest["spec"]["template"]["metadata"]
    meta["labels"][FAIL_LABEL] = "true"
    meta["annotations"].update({f"{FAIL_LABEL}/reason": reason, f"{FAIL_LABEL}/exit-code": str(exit_code),
                                f"{FAIL_LABEL}/message": message})
    backend.job_manifest = lambda _spec: manifest


async def test_oom_killed_pod_fails_the_run_and_cleanup_stops_retries(backend, data_dir):
    spec = run_spec(data_dir, CPU)
    failing(backend, spec, 137, "OOMKilled", "out of memory (kwok)")
    ref = await backend.submit(spec)
    status = await wait_state(backend, ref, spec, RunState.FAILED)
    assert status.reason == "out of memory: exceeded the hardware size's memory limit 2Gi"
    assert status.exit_code == 137
    await backend.cleanup(ref, spec)
    job = await backend.client.get_or_none("batch/v1", "Job", backend.namespace, ref)
    assert job is None or job["metadata"].get("deletionTimestamp") or "Failed" in json.dumps(job["status"])


async def test_user_error_is_not_retried(backend, data_dir):
    spec = run_spec(data_dir, CPU)
    # (kwok pastes the message into YAML unquoted: no colon in it)
    failing(backend, spec, 1, "Error", "Traceback ValueError")
    ref = await backend.submit(spec)
    status = await wait_state(backend, ref, spec, RunState.FAILED, reason="not retried")
    assert status.reason == "the run's code failed (exit code 1); not retried"
    # The Job controller sets FailureTarget (PodFailurePolicy) first, which fails the run, and Failed
    # once the pod is finished: that one may still be on its way.
    deadline = time.monotonic() + 30
    while True:
        job = await backend.client.get("batch/v1", "Job", backend.namespace, ref)
        conditions = {c["type"]: c.get("reason") for c in job["status"].get("conditions") or []}
        if conditions.get("Failed") == "PodFailurePolicy":
            break
        assert time.monotonic() < deadline, f"the Job never failed by its podFailurePolicy: {conditions}"
        await asyncio.sleep(0.3)
    assert len(await job_pods(backend, ref)) == 1  # and no second pod was made


async def test_deadline_exceeded(backend, data_dir):
    spec = run_spec(data_dir, CPU, timeout_seconds=2)
    manifest = backend.job_manifest(spec)
    manifest["spec"]["template"]["metadata"]["annotations"][COMPLETE_DELAY] = "300s"
    backend.job_manifest = lambda _spec: manifest
    ref = await backend.submit(spec)
    status = await wait_state(backend, ref, spec, RunState.FAILED, timeout=60)
    assert status.reason == "the run exceeded its time limit of 2 seconds"


async def test_distributed_run_is_an_indexed_job_with_rendezvous(backend, data_dir):
    size = Hardware(name="gpu-2x2", cpu=4, memory="8Gi", gpus=2, nodes=2)
    spec = run_spec(data_dir, size)
    ref = await backend.submit(spec)
    svc = await backend.client.get("v1", "Service", backend.namespace, ref)
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["metadata"]["ownerReferences"][0]["kind"] == "Job"
    await wait_state(backend, ref, spec, RunState.SUCCEEDED)
    pods = await job_pods(backend, ref)
    indexes = sorted(p["metadata"]["annotations"]["batch.kubernetes.io/job-completion-index"] for p in pods)
    assert indexes == ["0", "1"]
    for pod in pods:
        assert pod["spec"]["nodeName"] == GPU_NODE and pod["spec"]["subdomain"] == ref
        env = {e["name"]: e.get("value") for e in pod["spec"]["containers"][0]["env"]}
        assert env["MASTER_ADDR"] == f"{ref}-0.{ref}" and env["WORLD_SIZE"] == "4"


def dep_spec(data_dir: Path, **kw: Any) -> DeploymentSpec:
    run = data_dir / "runs" / "r1" / "artifacts"
    module = data_dir / "models" / "iris" / "v1" / "model.py"
    values: dict[str, Any] = dict(
        deployment_id=uuid.uuid4().hex[:8], name=f"iris-{uuid.uuid4().hex[:4]}", user="alice", model="iris",
        version="v1", module_path=module, artifacts=run, hardware=CPU, image=f"reg/env@{DIGEST}",
        env={"MLP_MODULE_PATH": str(module), "MLP_ARTIFACTS": str(run), "MLP_RUN_ID": "r1"}, replicas=2,
    )
    values.update(kw)
    return DeploymentSpec(**values)


async def test_deploy_roll_and_undeploy(backend, data_dir):
    spec = dep_spec(data_dir)
    ref = await backend.deploy(spec)
    deadline = time.monotonic() + 120
    while (status := await backend.deployment_status(ref, spec)).state != "ready":
        assert time.monotonic() < deadline, status
        await asyncio.sleep(0.5)
    assert status.url == f"http://{ref}.{backend.namespace}.svc.cluster.local"
    dep = await backend.client.get("apps/v1", "Deployment", backend.namespace, ref)
    probe = dep["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["path"] == "/ping"
    svc = await backend.client.get("v1", "Service", backend.namespace, ref)
    assert svc["spec"]["ports"][0]["port"] == 80
    # A new version to the same name: the same Deployment, a new revision.
    v2 = dep_spec(data_dir, name=spec.name, version="v2")
    assert await backend.deploy(v2) == ref
    dep2 = await backend.client.get("apps/v1", "Deployment", backend.namespace, ref)
    assert dep2["metadata"]["generation"] > dep["metadata"]["generation"]
    assert dep2["spec"]["template"]["metadata"]["labels"]["mlplatform.io/version"] == "v2"
    await backend.undeploy(ref, spec)
    await backend.undeploy(ref, spec)
    assert await backend.client.get_or_none("apps/v1", "Deployment", backend.namespace, ref) is None
    assert (await backend.deployment_status(ref, spec)).state == "failed"


def test_server_dry_run_accepts_every_builder(namespace, tmp_path):
    data = tmp_path / "data"
    store = mf.ArtifactStore(pvc=PVC, root=data)
    train = run_spec(data, GPU1, timeout_seconds=600)
    dist = run_spec(data, Hardware(name="d", cpu=2, memory="4Gi", gpus=2, nodes=3))
    batch = run_spec(data, CPU, action="batch-predict", source_artifacts=data / "runs" / "x" / "artifacts",
                     inputs=data / "in.csv", outputs=data / "out" / "o.csv")
    common = dict(namespace=namespace, image=None, secret_name="mlp-cred-alice", priority_class=None)
    dist_job = mf.make_job(dist, artifacts=store, **common)
    dep = dep_spec(data)
    objects = [
        mf.make_job(train, artifacts=store, **common),
        mf.make_job(train, artifacts=mf.ArtifactStore(uri="s3://b/mlp"), **common),
        mf.make_job(batch, artifacts=store, **common),
        dist_job,
        mf.make_headless_service(dist_job),
        mf.make_secret("mlp-run-x-token", namespace, {"MLP_RUN_TOKEN": "t"}, {}),
        mf.make_secret("mlp-cred-alice", namespace, {"K": "v"}, {}, encode=True),
        mf.make_deployment(dep, namespace=namespace, image=None, artifacts=store, secret_name="mlp-cred-alice"),
        mf.make_service(dep, namespace=namespace),
        mf.make_hpa(dep, namespace=namespace, min_replicas=1, max_replicas=3),
        mf.make_cronjob(batch, name="Nightly", schedule="0 3 * * *", time_zone="UTC", artifacts=store, **common),
    ]
    for obj in objects:
        proc = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(obj), check=False)
        assert proc.returncode == 0, f"{obj['kind']} {obj['metadata']['name']}: {proc.stderr}"
        assert json.loads(proc.stdout)["kind"] == obj["kind"]


async def test_client_retries_and_reports_errors(namespace):
    client = KubeClient.from_kubeconfig(kubeconfig(), retries=1, backoff=0.01)
    try:
        with pytest.raises(ApiError) as info:
            await client.create({"apiVersion": "v1", "kind": "Secret",
                                 "metadata": {"name": "Bad_Name", "namespace": namespace}})
        assert info.value.status == 422 and "Bad_Name" in info.value.message
    finally:
        await client.close()


# -- RBAC: deploy/rbac/platform-role.yaml ----------------------------------------------------------

ROLE_FILE = ROOT / "deploy" / "rbac" / "platform-role.yaml"


@pytest.fixture(scope="module")
def platform_sa(namespace: str) -> Iterator[str]:
    """The shipped ServiceAccount, Role and RoleBinding in the test namespace (and the
    cluster-wide TokenReview role, named after the namespace so test modules do not collide)."""
    import yaml

    docs = [d for d in yaml.safe_load_all(ROLE_FILE.read_text()) if d]
    assert {d["kind"] for d in docs} == {"ServiceAccount", "Role", "RoleBinding", "ClusterRole",
                                         "ClusterRoleBinding"}
    for doc in docs:
        if doc["kind"].startswith("Cluster"):
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{namespace}"
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{namespace}"
        else:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    yield f"system:serviceaccount:{namespace}:mlplatform"
    for doc in docs:
        if doc["kind"].startswith("Cluster"):
            kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)


def can_i(sa: str, namespace: str, verb: str, resource: str, subresource: str | None = None) -> bool:
    args = ["auth", "can-i", verb, resource, "-n", namespace, f"--as={sa}"]
    if subresource:
        args.append(f"--subresource={subresource}")
    proc = kubectl(*args, check=False)
    assert proc.stdout.strip() in ("yes", "no"), proc
    return proc.stdout.strip() == "yes"


ALLOWED = [
    ("create", "jobs.batch", None), ("get", "jobs.batch", None), ("list", "jobs.batch", None),
    ("watch", "jobs.batch", None), ("delete", "jobs.batch", None),
    ("create", "cronjobs.batch", None), ("delete", "cronjobs.batch", None),
    ("get", "pods", None), ("list", "pods", None), ("watch", "pods", None), ("get", "pods", "log"),
    ("create", "secrets", None), ("get", "secrets", None), ("patch", "secrets", None), ("delete", "secrets", None),
    ("create", "services", None), ("delete", "services", None),
    ("create", "deployments.apps", None), ("patch", "deployments.apps", None), ("delete", "deployments.apps", None),
    ("patch", "deployments.apps", "scale"), ("list", "replicasets.apps", None),
    ("create", "horizontalpodautoscalers.autoscaling", None),
    ("delete", "horizontalpodautoscalers.autoscaling", None),
    # Revisions, rollback, scale and autoscale (services/deployments.py).
    ("get", "deployments.apps", None), ("get", "deployments.apps", "scale"),
    ("get", "horizontalpodautoscalers.autoscaling", None), ("patch", "horizontalpodautoscalers.autoscaling", None),
    ("list", "events", None), ("watch", "events.events.k8s.io", None),
]
DENIED = [
    ("create", "pods", "exec"), ("get", "pods", "exec"), ("create", "pods", "attach"),
    ("create", "pods", "portforward"), ("create", "pods", None), ("delete", "pods", None),
    ("list", "secrets", None), ("watch", "secrets", None),
    ("update", "jobs.batch", None), ("create", "roles.rbac.authorization.k8s.io", None),
    ("create", "rolebindings.rbac.authorization.k8s.io", None), ("create", "serviceaccounts", "token"),
    ("get", "configmaps", None), ("create", "persistentvolumeclaims", None),
]


def test_platform_role_allows_exactly_what_the_backend_uses(namespace, platform_sa):
    for verb, resource, sub in ALLOWED:
        assert can_i(platform_sa, namespace, verb, resource, sub), (verb, resource, sub)
    for verb, resource, sub in DENIED:
        assert not can_i(platform_sa, namespace, verb, resource, sub), (verb, resource, sub)
    # Nothing outside its namespace, nothing cluster-wide.
    for other in ("default", "kube-system"):
        for verb, resource in (("get", "secrets"), ("create", "jobs.batch"), ("list", "pods")):
            assert not can_i(platform_sa, other, verb, resource), (other, verb, resource)
    proc = kubectl("auth", "can-i", "create", "tokenreviews.authentication.k8s.io", f"--as={platform_sa}",
                   check=False)
    assert proc.stdout.strip() == "yes", proc
    for verb, resource in (("delete", "nodes"), ("list", "nodes"), ("create", "namespaces"),
                           ("create", "clusterrolebindings.rbac.authorization.k8s.io"),
                           ("get", "persistentvolumes")):
        proc = kubectl("auth", "can-i", verb, resource, f"--as={platform_sa}", check=False)
        assert proc.stdout.strip() == "no", (verb, resource, proc)


async def test_backend_works_as_the_platform_service_account(namespace, platform_sa, data_dir):
    client = KubeClient.from_kubeconfig(kubeconfig(), impersonate=platform_sa)
    backend = KubernetesBackend(namespace, artifacts=mf.ArtifactStore(pvc=PVC, root=data_dir), client=client)
    with pytest.raises(ApiError) as info:  # a 403, not a 404: it may not even look
        await client.get("v1", "Secret", "default", "anything")
    assert info.value.status == 403
    try:
        spec = run_spec(data_dir, GPU1)
        ref = await backend.submit(spec)
        assert await backend.submit(spec) == ref  # the idempotent path reads the Job back
        await wait_state(backend, ref, spec, RunState.SUCCEEDED)
        [pod] = await job_pods(backend, ref)
        admin = KubeClient.from_kubeconfig(kubeconfig())  # the kubelet's part: make the pod's token
        try:
            token = await pod_token(backend, pod, mf.TOKEN_AUDIENCE, client=admin)
        finally:
            await admin.close()
        assert await backend.authenticate_workload(token) == ref
        await backend.cleanup(ref, spec)
        await backend.cancel(ref, spec)
        dist = run_spec(data_dir, Hardware(name="d", cpu=1, memory="1Gi", nodes=2))
        dref = await backend.submit(dist)
        # The headless Service is owned by the Job (its uid from the create's metadata-only answer).
        djob = await client.get("batch/v1", "Job", namespace, dref)
        service = await client.get("v1", "Service", namespace, dref)
        assert [(o["apiVersion"], o["kind"], o["name"], o["uid"]) for o in service["metadata"]["ownerReferences"]] == \
            [("batch/v1", "Job", dref, djob["metadata"]["uid"])]
        await wait_state(backend, dref, dist, RunState.SUCCEEDED)
        await backend.cancel(dref, dist)
        dep = dep_spec(data_dir)
        dep_ref = await backend.deploy(dep)
        assert await backend.deploy(dataclasses_replace(dep, version="v2")) == dep_ref
        deadline = time.monotonic() + 60
        while (await backend.deployment_status(dep_ref, dep)).state != "ready":
            assert time.monotonic() < deadline
            await asyncio.sleep(0.5)
        # Scale, autoscale (create, then update through a rolling update), autoscale off.
        await backend.scale(dep_ref, dataclasses_replace(dep, replicas=3))
        auto = dataclasses_replace(dep, autoscale=Autoscale(1, 4, 50))
        await backend.scale(dep_ref, auto)
        await backend.deploy(dataclasses_replace(auto, version="v3", autoscale=Autoscale(2, 4, 50)))
        hpa = await client.get("autoscaling/v2", "HorizontalPodAutoscaler", namespace, dep_ref)
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 4)
        await backend.scale(dep_ref, dataclasses_replace(dep, replicas=1))
        assert await client.get_or_none("autoscaling/v2", "HorizontalPodAutoscaler", namespace, dep_ref) is None
        await backend.undeploy(dep_ref, dep)
    finally:
        await backend.close()


def dataclasses_replace(obj: Any, **changes: Any) -> Any:
    import dataclasses

    return dataclasses.replace(obj, **changes)


# -- retries: a real HTTP server that answers 429/503 before the real answer -----------------------


class _Flaky:
    """A tiny HTTP server: each request takes the next (status, body, headers) from a script.

    A stand-in for the API server, on purpose and only for this: the real one (which every other
    test here uses) cannot be made to answer 429 / 503 / a create-409 at a chosen request, and
    these tests check how many retries, with which delays (Retry-After), the client makes."""

    def __init__(self, script: list[tuple[int, dict[str, Any], dict[str, str]]]) -> None:
        import http.server
        import threading

        self.script = list(script)
        self.seen: list[tuple[str, str]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                outer.seen.append((self.command, self.path))
                status, body, headers = outer.script.pop(0)
                data = json.dumps(body).encode()
                self.send_response(status)
                for k, v in {"Content-Type": "application/json", **headers}.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


async def test_client_retries_429_and_5xx_then_reads_back_on_409():
    from mlplatform_server.backends.kubernetes.client import KubeConfig

    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}}
    server = _Flaky([
        (429, {"reason": "TooManyRequests", "message": "slow down"}, {"Retry-After": "0"}),
        (503, {"reason": "ServiceUnavailable", "message": "etcd"}, {}),
        (409, {"reason": "AlreadyExists", "message": "exists"}, {}),
        (500, {"reason": "InternalError", "message": "blip"}, {}),
        (200, {**secret, "metadata": {**secret["metadata"], "uid": "u1"}}, {}),
        (403, {"reason": "Forbidden", "message": "no"}, {}),
    ])
    client = KubeClient(KubeConfig(server.url, False), backoff=0.01)
    try:
        got = await client.create(secret)
        assert got["metadata"]["uid"] == "u1"
        assert server.seen == [("POST", "/api/v1/namespaces/ns/secrets")] * 3 + \
            [("GET", "/api/v1/namespaces/ns/secrets/s")] * 2
        with pytest.raises(ApiError) as info:  # not retried
            await client.delete("v1", "Secret", "ns", "s")
        assert (info.value.status, info.value.message) == (403, "no")
        assert len(server.seen) == 6
    finally:
        await client.close()
        server.close()
