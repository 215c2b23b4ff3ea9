"""Deployment revisions, rollback, scale and autoscale on `mlp server --backend kubernetes`, against the
real control plane of scripts/kube-up.sh (kwok nodes: pods become ready, they run no code).

Rollback is a rolling update of the same Deployment back to the old pod template (the Deployment
controller reuses the old ReplicaSet under a new revision number); scale patches the Deployment's
scale; autoscale makes an autoscaling/v2 HorizontalPodAutoscaler the API server accepts, and leaves
the replicas to it; turning it off or undeploying deletes it.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from kubetest import PVC, absent, get_json, kubeconfig, kubectl, namespace_with_claim
from support import wait_until

SOURCE = '''
ANSWER = "{answer}"


class Model:
    hyperparameters = {{"scale": 1}}

    def train(self):
        (self.artifacts / "answer.txt").write_text(ANSWER)

    def predict(self, features: dict):
        return {{"answer": ANSWER}}
'''
NAME = "mlp-dep-svc"


@pytest.fixture
def namespace() -> Any:
    with namespace_with_claim("mlp-dlc") as ns:
        yield ns


def rollout_revision(ns: str) -> str:
    return get_json(ns, "deployment", NAME)["metadata"]["annotations"].get("deployment.kubernetes.io/revision", "")


def replica_sets(ns: str) -> dict[str, str]:
    """version label of each ReplicaSet's pod template → its rollout revision."""
    items = get_json(ns, "rs", "-l", "mlplatform.io/deployment=svc")["items"]
    return {rs["spec"]["template"]["metadata"]["labels"]["mlplatform.io/version"]:
            rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"] for rs in items}


def test_revisions_rollback_scale_and_autoscale_on_kubernetes(mlp_server_factory, namespace, tmp_path: Path):
    server = mlp_server_factory(
        backend="kubernetes",
        extra_args=["--namespace", namespace, "--kubeconfig", kubeconfig(), "--pvc", PVC],
    )
    runs = {}
    for answer in ("one", "two"):
        path = tmp_path / f"echo_{answer}.py"
        path.write_text(SOURCE.format(answer=answer))
        version = server.mlp_json("models", "save", str(path), "--name", "echo")["version"]
        run = server.mlp_json("train", f"echo:{version}", "--hardware", "cpu-small", "--wait")
        assert run["status"] == "succeeded", run
        runs[version] = run["id"]

    def deploy(version: str, *extra: str) -> dict[str, Any]:
        return server.mlp_json("deploy", f"echo:{version}", "--run", runs[version], "--name", "svc",
                               "--hardware", "cpu-small", *extra)

    # v1, then v2 to the same name: one Deployment, rolled to a second ReplicaSet.
    assert deploy("1", "--replicas", "2")["revision"] == 1
    wait_until("revision 1 rolled out", lambda: rollout_revision(namespace) == "1")
    v1 = get_json(namespace, "deployment", NAME)["spec"]["template"]
    assert v1["metadata"]["labels"]["mlplatform.io/version"] == "1"
    assert deploy("2", "--replicas", "2")["revision"] == 2
    wait_until("revision 2 rolled out", lambda: replica_sets(namespace) == {"1": "1", "2": "2"})
    v2 = get_json(namespace, "deployment", NAME)["spec"]["template"]
    env2 = {e["name"]: e.get("value") for e in v2["spec"]["containers"][0]["env"]}
    assert env2["MLP_RUN_ID"] == runs["2"] and v2["metadata"]["labels"]["mlplatform.io/version"] == "2"

    # Rollback: the same Deployment gets v1's pod template back (image, env, labels), and the
    # controller brings v1's ReplicaSet back as rollout revision 3.
    back = server.mlp_json("deployments", "rollback", "svc")
    assert (back["revision"], back["version"], back["run_id"]) == (3, "1", runs["1"])
    wait_until("v1's ReplicaSet as revision 3", lambda: replica_sets(namespace) == {"1": "3", "2": "2"})
    dep = get_json(namespace, "deployment", NAME)
    assert dep["spec"]["template"] == v1
    assert dep["metadata"]["labels"]["mlplatform.io/version"] == "1"
    history = server.mlp_json("deployments", "revisions", "svc")["items"]
    assert [(r["revision"], r["version"], r["rollback_of"], r["current"]) for r in history] == [
        (1, "1", None, False), (2, "2", None, False), (3, "1", 1, True)]
    wait_until("ready after the rollback",
               lambda: server.mlp_json("deployments", "show", "svc")["status"] == "ready", timeout=90)

    # Scale: spec.replicas, 0 included; no new revision.
    for replicas in ("0", "3"):
        scaled = server.mlp_json("deployments", "scale", "svc", "--replicas", replicas)
        assert scaled["replicas"] == int(replicas) and scaled["revision"] == 3
        assert get_json(namespace, "deployment", NAME)["spec"]["replicas"] == int(replicas)
    assert rollout_revision(namespace) == "3"

    # Autoscale: an HPA the API server accepted, with the bounds asked for.
    auto = server.mlp_json("deployments", "autoscale", "svc", "--min", "2", "--max", "5", "--target-cpu", "60")
    assert auto["autoscale"] == {"min": 2, "max": 5, "target_cpu": 60} and auto["replicas"] == 3
    hpa = get_json(namespace, "hpa", NAME)
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 5)
    assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": NAME}
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {"type": "Utilization", "averageUtilization": 60}
    # The replicas are the HPA's now: a rollback (a rolling update) and the reconcile loop leave them.
    kubectl("-n", namespace, "scale", f"deployment/{NAME}", "--replicas=4")
    rolled = server.mlp_json("deployments", "rollback", "svc", "--revision", "2")
    assert rolled["revision"] == 4 and rolled["autoscale"] == {"min": 2, "max": 5, "target_cpu": 60}
    wait_until("v2's ReplicaSet as revision 4", lambda: replica_sets(namespace) == {"1": "3", "2": "4"})
    time.sleep(2.0)  # several reconcile passes
    dep = get_json(namespace, "deployment", NAME)
    assert dep["spec"]["replicas"] == 4 and dep["spec"]["template"] == v2
    assert get_json(namespace, "hpa", NAME)["spec"]["minReplicas"] == 2

    # Autoscaling off: the HPA is deleted, the fixed replicas apply again.
    off = server.mlp_json("deployments", "autoscale", "svc", "--off")
    assert off["autoscale"] is None and off["replicas"] == 3
    assert absent(namespace, f"hpa/{NAME}")
    assert get_json(namespace, "deployment", NAME)["spec"]["replicas"] == 3

    # Deploy with autoscaling; undeploy removes the Deployment, the Service and the HPA.
    again = deploy("2", "--min-replicas", "1", "--max-replicas", "2")
    assert again["revision"] == 5 and again["autoscale"] == {"min": 1, "max": 2, "target_cpu": 70}
    assert get_json(namespace, "hpa", NAME)["spec"]["maxReplicas"] == 2
    server.mlp("deployments", "delete", "svc")
    for what in (f"deployment/{NAME}", f"service/{NAME}", f"hpa/{NAME}"):
        wait_until(f"{what} deleted", lambda w=what: absent(namespace, w))
