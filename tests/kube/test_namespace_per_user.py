"""One namespace per user (`mlp server --backend kubernetes --namespace-per-user`) on the real
control plane of scripts/kube-up.sh: each user's runs, deployments, schedules and credentials live in
``<prefix><user>``, namespaces an admin made beforehand (with the platform's Role and the RWX claim);
a user without one gets a clear error and a run recorded as failed to start.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlplatform_server.backends.base import RunState
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend
from mlplatform_server.backends.kubernetes.client import ApiError, KubeClient
from mlplatform_server.errors import BackendError
from notebooks import IRIS_ROWS, realistic_notebook
from kubebackend import CPU, run_spec
from kubetest import PVC, absent, claim_manifests, get_json, kubeconfig, kubectl, pod_token
from support import wait_until

ROOT = Path(__file__).resolve().parents[2]
ROLE_FILE = ROOT / "deploy" / "rbac" / "platform-role.yaml"
METRIC = {"metrics": [{"name": "loss", "value": 0.5, "step": 1}]}


def run_status(server: Any, run_id: str) -> str:
    with server.api() as api:
        return api.get(f"/runs/{run_id}").json()["status"]


@contextmanager
def user_namespaces(prefix: str, users: list[str]) -> Iterator[dict[str, str]]:
    """What the admin provisions per user: the namespace and its RWX claim on the shared volume."""
    made: list[str] = []
    try:
        for user in users:
            ns = f"{prefix}{user}"
            kubectl("create", "namespace", ns)
            made.append(ns)
            kubectl("-n", ns, "wait", "serviceaccount/default", "--for=create", "--timeout=60s")
            kubectl("apply", "-f", "-", input=json.dumps(claim_manifests(ns)))
        for ns in made:
            kubectl("-n", ns, "wait", f"pvc/{PVC}", "--for=jsonpath={.status.phase}=Bound", "--timeout=60s")
        yield {user: f"{prefix}{user}" for user in users}
    finally:
        for ns in made:
            kubectl("delete", "namespace", ns, "--wait=false", check=False)
            kubectl("delete", "pv", f"{ns}-data", "--wait=false", check=False)


@pytest.fixture
def prefix() -> str:
    return f"mlpu{uuid.uuid4().hex[:6]}-"


@pytest.mark.timeout(600)  # two users' runs, a deployment, a schedule and a restart on a shared machine
def test_each_user_gets_their_own_namespace(mlp_server_factory, prefix, platform_yaml, tmp_path):
    with user_namespaces(prefix, ["alice", "bob"]) as namespaces:
        server = mlp_server_factory(backend="kubernetes", config=platform_yaml, extra_args=[
            "--namespace-per-user", "--namespace-prefix", prefix, "--kubeconfig", kubeconfig(), "--pvc", PVC])
        with server.api() as admin:
            tokens = {}
            for name in ("alice", "bob", "carol"):
                assert admin.post("/users", json={"name": name}).status_code == 201
                tokens[name] = admin.post(f"/users/{name}/tokens", json={}).json()["token"]
        nb = tmp_path / "iris.ipynb"
        nb.write_text(realistic_notebook())
        done, stuck = {}, {}
        for user in ("alice", "bob"):
            server.mlp_json("models", "save", str(nb), "--name", f"iris-{user}", token=tokens[user])
            done[user] = server.mlp_json("train", f"iris-{user}", "--wait", token=tokens[user])
            assert done[user]["status"] == "succeeded", done[user]
            stuck[user] = server.mlp_json("train", f"iris-{user}", "--hardware", "gpu-8", token=tokens[user])

        # Each run's Job is in its user's namespace, and only there.
        for user, other in (("alice", "bob"), ("bob", "alice")):
            ns = namespaces[user]
            for run in (done[user], stuck[user]):
                assert get_json(ns, "job", f"mlp-run-{run['id']}")["metadata"]["namespace"] == ns
                assert absent(namespaces[other], f"job/mlp-run-{run['id']}")
            with server.api(token=tokens[user]) as api:
                assert {r["id"] for r in api.get("/runs").json()["items"]} == {done[user]["id"], stuck[user]["id"]}
                assert api.get(f"/runs/{done[other]['id']}").status_code == 404

        # A pod reports metrics with its projected token, in both namespaces; for its own run only.
        for user, other in (("alice", "bob"), ("bob", "alice")):
            ns = namespaces[user]
            [pod] = wait_until("the pending pod", lambda n=ns, r=stuck[user]: get_json(
                n, "pods", "-l", f"batch.kubernetes.io/job-name=mlp-run-{r['id']}")["items"])
            with server.api(token=pod_token(ns, pod)) as as_pod:
                assert as_pod.post(f"/runs/{stuck[user]['id']}/metrics", json=METRIC).status_code == 201
                assert as_pod.post(f"/runs/{stuck[other]['id']}/metrics", json=METRIC).status_code == 404
            metrics = server.mlp_json("runs", "metrics", stuck[user]["id"], token=tokens[user])["items"]
            assert [(m["name"], m["value"]) for m in metrics] == [("loss", 0.5)]

        # Credentials: the user's Secret in the user's namespace.
        with server.api(token=tokens["alice"]) as alice:
            assert alice.put("/credentials/DB_PASSWORD", json={"value": "pw-1"}).status_code == 200
            assert [i["key"] for i in alice.get("/credentials").json()["items"]] == ["DB_PASSWORD"]
        secret = mf.credentials_secret_name("alice")
        assert get_json(namespaces["alice"], "secret", secret)["metadata"]["labels"]["mlplatform.io/user"] == "alice"
        assert absent(namespaces["bob"], f"secret/{secret}")

        # A deployment in the user's namespace.
        dep = server.mlp_json("deploy", "iris-bob", "--run", done["bob"]["id"], "--hardware", "cpu-small",
                              "--wait", token=tokens["bob"])
        assert dep["status"] == "ready", dep
        assert get_json(namespaces["bob"], "deployment", "mlp-dep-iris-bob")["spec"]["template"]
        get_json(namespaces["bob"], "service", "mlp-dep-iris-bob")
        assert absent(namespaces["alice"], "deployment/mlp-dep-iris-bob")

        # A schedule's CronJob in the user's namespace; its firing (a Job made from it, as the
        # controller would) is recorded as the user's run and followed there.
        data = server.data_dir.resolve()
        inputs = data / "inputs" / "rows.jsonl"
        inputs.parent.mkdir(parents=True)
        inputs.write_text("".join(json.dumps(row) + "\n" for row in IRIS_ROWS))
        created = server.mlp_json("schedules", "create", "nightly", "--model", "iris-alice", "--source-run",
                                  done["alice"]["id"], "--inputs", str(inputs), "--outputs",
                                  str(data / "predictions" / "{run_id}.jsonl"), "--cron", "0 3 * * *",
                                  token=tokens["alice"])
        cronjob = f"mlps-{created['id']}"
        assert created["backend_ref"] == f"{namespaces['alice']}/{cronjob}"
        get_json(namespaces["alice"], "cronjob", cronjob)
        assert absent(namespaces["bob"], f"cronjob/{cronjob}")
        fired = f"{cronjob}-manual01"
        kubectl("-n", namespaces["alice"], "create", "job", f"--from=cronjob/{cronjob}", fired)
        wait_until("the firing recorded", lambda: server.mlp_json("schedules", "show", "nightly",
                                                                  token=tokens["alice"])["runs"])
        firing = server.wait_run(fired)
        assert firing["status"] == "succeeded" and firing["launched_by"] == "alice", firing

        # carol has no namespace: a clear error naming it and what the admin must do; the run is
        # recorded as failed to start, nothing is left pending.
        carol_ns = f"{prefix}carol"
        with server.api(token=tokens["carol"]) as carol:
            server.mlp_json("models", "save", str(nb), "--name", "iris-carol", token=tokens["carol"])
            answer = carol.post("/runs", json={"model": "iris-carol", "kind": "train"})
            assert answer.status_code == 502, answer.text
            message = answer.json()["message"]
            assert f"the namespace {carol_ns} of user carol does not exist" in message, message
            assert "apply deploy/rbac/platform-role.yaml there" in message and PVC in message, message
            [failed] = carol.get("/runs").json()["items"]
            assert failed["status"] == "failed" and carol_ns in failed["reason"], failed
            refused = carol.put("/credentials/TOKEN", json={"value": "x"})
            assert refused.status_code == 502 and carol_ns in refused.text, refused.text
            cli = server.mlp("train", "iris-carol", token=tokens["carol"], check=False)
            assert cli.returncode != 0 and f"the namespace {carol_ns} of user carol does not exist" in cli.stderr

        # kill -9 and restart: every state stays true, in both namespaces.
        server.kill()
        server.start()
        time.sleep(3.0)  # several reconcile passes of the new server
        for user in ("alice", "bob"):
            with server.api(token=tokens[user]) as api:
                assert api.get(f"/runs/{done[user]['id']}").json()["status"] == "succeeded"
                after = api.get(f"/runs/{stuck[user]['id']}").json()
                # (the scheduler's words vary with the nodes' state on a loaded machine)
                assert after["status"] == "pending" and "cannot be scheduled" in (after["reason"] or ""), after
        # Still served (ready; "deploying" only while a loaded machine's kwok node misses heartbeats
        # and marks its pods not ready): never failed, never lost.
        shown = server.mlp_json("deployments", "show", "iris-bob", token=tokens["bob"])
        assert shown["status"] in ("ready", "deploying") and shown["url"], shown
        with server.api(token=tokens["carol"]) as carol:
            assert carol.get(f"/runs/{failed['id']}").json()["status"] == "failed"
        assert run_status(server, fired) == "succeeded"
        # ...and a pod token still works after the restart (the new server watches the namespace anew).
        ns = namespaces["alice"]
        [pod] = get_json(ns, "pods", "-l", f"batch.kubernetes.io/job-name=mlp-run-{stuck['alice']['id']}")["items"]
        with server.api(token=pod_token(ns, pod)) as as_pod:
            assert as_pod.post(f"/runs/{stuck['alice']['id']}/metrics", json=METRIC).status_code == 201

        for user in ("alice", "bob"):
            cancelled = server.mlp_json("runs", "cancel", stuck[user]["id"], token=tokens[user])
            assert cancelled["status"] == "cancelled"
            wait_until("the Job deleted", lambda u=user: absent(namespaces[u], f"job/mlp-run-{stuck[u]['id']}"))
        server.mlp("deployments", "delete", "iris-bob", token=tokens["bob"])
        wait_until("the Deployment deleted", lambda: absent(namespaces["bob"], "deployment/mlp-dep-iris-bob"))


# -- the platform's service account, bound only in the users' namespaces ---------------------------

@contextmanager
def platform_sa_in(namespaces: list[str], home: str) -> Iterator[str]:
    """deploy/rbac/platform-role.yaml as the admin applies it per user namespace: the ServiceAccount
    in the platform's own namespace ``home``, the Role and RoleBinding in each user namespace."""
    docs = [d for d in yaml.safe_load_all(ROLE_FILE.read_text()) if d]
    items: list[dict[str, Any]] = []
    for doc in docs:
        for subject in doc.get("subjects") or []:
            subject["namespace"] = home
        if doc["kind"] == "ServiceAccount":
            items.append({**doc, "metadata": {**doc["metadata"], "namespace": home}})
        elif doc["kind"] in ("Role", "RoleBinding"):
            items += [json.loads(json.dumps({**doc, "metadata": {**doc["metadata"], "namespace": ns}}))
                      for ns in namespaces]
        else:
            doc["metadata"]["name"] = f"{doc['metadata']['name']}-{home}"
            if doc["kind"] == "ClusterRoleBinding":
                doc["roleRef"]["name"] = f"{doc['roleRef']['name']}-{home}"
            items.append(doc)
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": items}))
    try:
        yield f"system:serviceaccount:{home}:mlplatform"
    finally:
        for doc in items:
            if doc["kind"].startswith("Cluster"):
                kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found", check=False)


async def _status(backend: KubernetesBackend, ref: str, spec: Any, want: RunState, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while (status := await backend.status(ref, spec)).state != want:
        assert time.monotonic() < deadline, f"{ref} is {status}, never {want}"
        await asyncio.sleep(0.3)


async def test_platform_sa_works_in_user_namespaces_and_nowhere_else(prefix, tmp_path):

    home = f"mlp-home-{uuid.uuid4().hex[:6]}"
    kubectl("create", "namespace", home)
    data_dir = tmp_path / "data"
    try:
        with user_namespaces(prefix, ["alice", "bob", "eve"]) as namespaces, \
                platform_sa_in([namespaces["alice"], namespaces["bob"]], home) as sa:
            # RBAC both ways: allowed in alice's and bob's namespaces, not in eve's (no Role there),
            # and no right to make namespaces.
            for ns, allowed in ((namespaces["alice"], "yes"), (namespaces["bob"], "yes"), (namespaces["eve"], "no")):
                proc = kubectl("auth", "can-i", "create", "jobs.batch", "-n", ns, f"--as={sa}", check=False)
                assert proc.stdout.strip() == allowed, (ns, proc)
            assert kubectl("auth", "can-i", "create", "namespaces", f"--as={sa}", check=False).stdout.strip() == "no"

            client = KubeClient.from_kubeconfig(kubeconfig(), impersonate=sa)
            backend = KubernetesBackend(None, artifacts=mf.ArtifactStore(pvc=PVC, root=data_dir), client=client,
                                        namespace_prefix=prefix)
            admin = KubeClient.from_kubeconfig(kubeconfig())
            try:
                refs = {}
                for user in ("alice", "bob"):
                    spec = run_spec(data_dir, CPU, user=user)
                    ref = await backend.submit(spec)
                    assert ref == f"{namespaces[user]}/mlp-run-{spec.run_id}"
                    await _status(backend, ref, spec, RunState.SUCCEEDED)
                    refs[user] = (ref, spec)
                    # The pod's projected token maps to the namespaced reference.
                    [pod] = await admin.list("v1", "Pod", namespaces[user],
                                             label_selector=f"batch.kubernetes.io/job-name=mlp-run-{spec.run_id}")
                    token = pod_token(namespaces[user], pod)
                    assert await backend.authenticate_workload(token) == ref
                    when = await backend.put_credential(user, "API_KEY", f"{user}-secret")
                    assert when is not None and list(await backend.credential_keys(user)) == ["API_KEY"]
                    await admin.get("v1", "Secret", namespaces[user], mf.credentials_secret_name(user))
                # The watches of both namespaces report changes with the references submit returned.
                deadline = time.monotonic() + 30
                while backend.changed_refs() is None:  # until both namespaces' watches are synced
                    assert time.monotonic() < deadline, "the watches never synced"
                    await asyncio.sleep(0.3)
                for ref, spec in refs.values():
                    await backend.cancel(ref, spec)  # deleting its Job is a change of each run
                seen: set[str] = set()
                while not {refs["alice"][0], refs["bob"][0]} <= seen:
                    changed = backend.changed_refs()
                    assert changed is not None and time.monotonic() < deadline, (changed, seen)
                    seen |= changed
                    await asyncio.sleep(0.3)
                assert all(ref.startswith(prefix) and "/" in ref for ref in seen), seen

                # eve's namespace exists but the platform is not let in: nothing is created there.
                with pytest.raises(BackendError, match=f"the namespace {namespaces['eve']} of user eve does not "
                                                       "let the platform in"):
                    await backend.submit(run_spec(data_dir, CPU, user="eve"))
                with pytest.raises(BackendError, match=f"the namespace {namespaces['eve']} of user eve"):
                    await backend.put_credential("eve", "K", "v")
                assert await admin.list("batch/v1", "Job", namespaces["eve"]) == []
                with pytest.raises(ApiError) as info:
                    await client.list("batch/v1", "Job", namespaces["eve"])
                assert info.value.status == 403
                # A pod token from a namespace the platform does not manage is refused.
                kubectl("-n", home, "wait", "serviceaccount/default", "--for=create", "--timeout=60s")
                kubectl("-n", home, "run", "outsider", "--image=registry.local/none:1", "--restart=Never")
                outsider = get_json(home, "pod", "outsider")
                assert await backend.authenticate_workload(pod_token(home, outsider)) is None
            finally:
                await backend.close()
                await admin.close()
    finally:
        kubectl("delete", "namespace", home, "--wait=false", check=False)


async def test_missing_user_namespace_is_a_clear_error(prefix, tmp_path):

    data_dir = tmp_path / "data"
    backend = KubernetesBackend(None, kubeconfig(), mf.ArtifactStore(pvc=PVC, root=data_dir), namespace_prefix=prefix)
    try:
        with pytest.raises(BackendError) as info:
            await backend.submit(run_spec(data_dir, CPU, user="dave"))
        message = str(info.value)
        assert f"the namespace {prefix}dave of user dave does not exist; an admin must create it" in message
        assert f"the RWX claim {PVC} on the shared volume" in message
        assert backend.changed_refs() is None  # nothing watched for dave
        assert "dave" not in "".join(backend.view.watches)
    finally:
        await backend.close()


def test_buildkit_build_job_runs_in_the_users_namespace(mlp_server_factory, prefix, tmp_path):
    from support import registry_env, save_with_requirements

    registries = registry_env()
    registry = registries["MLP_TEST_REGISTRY_AUTH"]
    base = registries["MLP_TEST_BASE_REF"].replace(registries["MLP_TEST_REGISTRY"], registry)
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump({
        "environments": [{"name": "python", "image": base, "default": True}],
        "hardware": [{"name": "cpu-small", "cpu": 1, "memory": "1Gi", "default": True}],
        "builders": {"buildkit": {"timeout_seconds": 120}},
        "kubernetes": {"namespace_per_user": True, "namespace_prefix": prefix},  # platform.yaml, not flags
    }))
    with user_namespaces(prefix, ["alice"]) as namespaces:
        server = mlp_server_factory(backend="kubernetes", config=config,
                                    extra_args=["--kubeconfig", kubeconfig(), "--pvc", PVC],
                                    extra_env={"MLP_REGISTRY": registry,
                                               "MLP_REGISTRY_AUTH": registries["MLP_TEST_REGISTRY_AUTH_FILE"]})
        with server.api() as admin:
            assert admin.post("/users", json={"name": "alice"}).status_code == 201
            token = admin.post("/users/alice/tokens", json={}).json()["token"]
        server.token = token  # save_with_requirements saves as this user
        folder = save_with_requirements(server, tmp_path)
        # kwok runs no BuildKit: the Job completes without pushing; what matters is where it ran.
        proc = server.mlp("build", "iris", "--builder", "buildkit", "--context", str(folder), check=False)
        assert proc.returncode != 0 and "pushed no image" in proc.stderr, proc.stderr
        jobs = get_json(namespaces["alice"], "jobs", "-l", "app.kubernetes.io/component=build")["items"]
        assert len(jobs) == 1 and jobs[0]["status"].get("succeeded") == 1, jobs
