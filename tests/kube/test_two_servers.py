"""Two `mlp server --backend kubernetes` processes on one PostgreSQL database and one namespace, as
the Helm chart runs `platform.replicas: 2`, against the real control plane of scripts/kube-up.sh:
one leads the background loop, the other serves the API only; a run submitted through either is
followed to its end; a deploy and a scale of one name sent to different servers at once do not
interleave; when the leader is killed -9 the other takes over and keeps every run followed.

Needs MLP_TEST_KUBECONFIG and MLP_TEST_PG_URL (set by `make test`); fails, never skips, without them.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from kubetest import PVC, get_json, kubeconfig, kubectl, namespace_with_claim
from notebooks import realistic_notebook
from support import wait_until


@pytest.fixture
def namespace() -> Any:
    with namespace_with_claim("mlp-two") as ns:
        yield ns


def leads(server: Any) -> bool:
    with server.api() as api:
        return api.get("/health").json()["leader"]


def leader_of(*servers: Any) -> Any:
    """The one server that says it leads, or None while that is not so."""
    leading = [s for s in servers if leads(s)]
    return leading[0] if len(leading) == 1 else None


def test_two_servers_share_one_database(mlp_server_factory, namespace, platform_yaml, postgres_url, tmp_path):
    args = ["--namespace", namespace, "--kubeconfig", kubeconfig(), "--pvc", PVC]
    servers = [mlp_server_factory(backend="kubernetes", config=platform_yaml, db_url=postgres_url, extra_args=args)
               for _ in range(2)]
    leader = wait_until("exactly one leader", lambda: leader_of(*servers), timeout=10)
    standby = next(s for s in servers if s is not leader)
    for _ in range(5):  # and it stays so
        assert leader_of(*servers) is leader

    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    standby.mlp_json("models", "save", str(nb), "--name", "iris")
    # Submitted through the server that stands by: the leader's loop records how it ends.
    done = standby.mlp_json("train", "iris", "--hardware", "cpu-small", "--wait")
    assert done["status"] == "succeeded", done
    assert leader.mlp_json("runs", "show", done["id"])["status"] == "succeeded"

    # One name changed through both servers at once: the changes take turns (one lock across
    # servers), so the database and the Deployment agree on the replicas afterwards.
    first = leader.mlp_json("deploy", "iris", "--run", done["id"], "--hardware", "cpu-small", "--wait")
    assert first["status"] == "ready", first
    answers: dict[str, Any] = {}
    calls = {
        "deploy": lambda: leader.mlp_json("deploy", "iris", "--run", done["id"], "--hardware", "cpu-small"),
        "scale": lambda: standby.mlp_json("deployments", "scale", "iris", "--replicas", "3"),
    }
    threads = [threading.Thread(target=lambda k=k, f=f: answers.__setitem__(k, f())) for k, f in calls.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert set(answers) == {"deploy", "scale"}, answers
    shown = leader.mlp_json("deployments", "show", "iris")
    assert shown["revision"] == 2, shown
    deployment = get_json(namespace, "deployment", "mlp-dep-iris")
    assert deployment["spec"]["replicas"] == shown["replicas"], (shown, deployment["spec"])
    wait_until("the deployment ready", lambda: standby.mlp_json("deployments", "show", "iris")["status"] == "ready")

    # The leader dies: the other takes the lead and follows what was in flight and what comes next.
    stuck = leader.mlp_json("train", "iris", "--hardware", "gpu-8")  # fits no node: stays pending
    leader.kill()
    wait_until("the standby to lead", lambda: leads(standby), timeout=20)
    later = standby.mlp_json("train", "iris", "--hardware", "cpu-small", "--wait")
    assert later["status"] == "succeeded", later
    pending = wait_until("the pending run's reason", lambda: (lambda r: r if "nvidia.com/gpu" in (r["reason"] or "")
                                                              else None)(standby.mlp_json("runs", "show", stuck["id"])))
    assert pending["status"] == "pending", pending
    assert standby.mlp_json("runs", "cancel", stuck["id"])["status"] == "cancelled"
    standby.mlp("deployments", "delete", "iris")
    wait_until("the Deployment deleted", lambda: "NotFound" in kubectl(
        "-n", namespace, "get", "deployment/mlp-dep-iris", check=False).stderr)
