"""Users' credentials on the real control plane of scripts/kube-up.sh: `mlp server --backend
kubernetes` writes one labelled Secret per user, key by key (concurrent writes lose none), Jobs
reference it through envFrom with no literal value anywhere in their spec, deletes remove one key,
and the API never answers a value. The backend also does all of it as the platform's service
account with only deploy/rbac/platform-role.yaml.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from mlplatform_server.backends.kubernetes import credentials as kcred
from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend
from mlplatform_server.backends.kubernetes.client import KubeClient
from kubetest import PVC, kubeconfig, kubectl, namespace_with_claim
from notebooks import realistic_notebook

ROOT = Path(__file__).resolve().parents[2]
SECRET = "ghp_" + os.urandom(12).hex() + "-kube!"


@pytest.fixture(scope="module")
def namespace() -> Any:
    with namespace_with_claim("mlp-cred") as ns:
        yield ns


def secret_of(ns: str, name: str) -> dict[str, Any] | None:
    proc = kubectl("-n", ns, "get", "secret", name, "-o", "json", check=False)
    return json.loads(proc.stdout) if proc.returncode == 0 else None


def decoded(secret: dict[str, Any]) -> dict[str, str]:
    return {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}


def test_server_keeps_credentials_in_one_secret_per_user(mlp_server_factory, namespace, tmp_path):
    server = mlp_server_factory(backend="kubernetes",
                                extra_args=["--namespace", namespace, "--kubeconfig", kubeconfig(), "--pvc", PVC])
    answers: list[str] = []

    def api(token: str) -> httpx.Client:
        return httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {token}"},
                            timeout=60, event_hooks={"response": [lambda r: answers.append(r.read().decode())]})

    admin = api(server.token)
    tokens = {}
    for name in ("alice", "bob"):
        assert admin.post("/users", json={"name": name}).status_code == 201
        tokens[name] = admin.post(f"/users/{name}/tokens", json={}).json()["token"]
    alice, bob = api(tokens["alice"]), api(tokens["bob"])
    assert alice.get("/credentials").json() == {"user": "alice", "items": []}  # no Secret yet

    # the first write creates the labelled Secret (through the CLI: the value comes from stdin)
    proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", "credentials", "set", "GITHUB_TOKEN",
                           "--value-stdin", "--json"], input=SECRET + "\n", capture_output=True, text=True,
                          timeout=60, cwd=ROOT, env={**os.environ, "MLP_URL": server.url, "MLP_TOKEN": tokens["alice"]})
    assert proc.returncode == 0, proc.stderr
    assert SECRET not in proc.stdout
    name = mf.credentials_secret_name("alice")
    assert name == "mlp-cred-alice"
    secret = secret_of(namespace, name)
    assert secret is not None and secret["type"] == "Opaque"
    assert secret["metadata"]["labels"] == {"app.kubernetes.io/managed-by": "mlplatform",
                                            "mlplatform.io/component": "credentials", "mlplatform.io/user": "alice"}
    assert secret["metadata"]["annotations"]["mlplatform.io/user"] == "alice"
    assert decoded(secret) == {"GITHUB_TOKEN": SECRET}

    # later writes patch one key each: eight at once lose none
    assert alice.put("/credentials/DB_PASSWORD", json={"value": "pw-1"}).status_code == 200
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(lambda i: alice.put(f"/credentials/K{i}", json={"value": f"v{i}"}).status_code,
                              range(8)))
    assert codes == [200] * 8
    values = decoded(secret_of(namespace, name))
    assert values == {"GITHUB_TOKEN": SECRET, "DB_PASSWORD": "pw-1", **{f"K{i}": f"v{i}" for i in range(8)}}
    assert alice.put("/credentials/DB_PASSWORD", json={"value": "pw-2"}).json()["created"] is False
    assert decoded(secret_of(namespace, name))["DB_PASSWORD"] == "pw-2"

    listed = alice.get("/credentials").json()
    assert [i["key"] for i in listed["items"]] == sorted(values)
    assert all(i["updated_at"] and set(i) == {"key", "updated_at"} for i in listed["items"])

    # others: nothing to see or delete; bob's own write is his own Secret
    assert bob.get("/credentials").json()["items"] == []
    assert bob.get("/credentials", params={"user": "alice"}).status_code == 403
    assert bob.delete("/credentials/GITHUB_TOKEN", params={"user": "alice"}).status_code == 403
    assert bob.delete("/credentials/GITHUB_TOKEN").status_code == 404
    assert bob.put("/credentials/GITHUB_TOKEN", json={"value": "bobs"}).status_code == 200
    assert decoded(secret_of(namespace, "mlp-cred-bob")) == {"GITHUB_TOKEN": "bobs"}
    assert decoded(secret_of(namespace, name))["GITHUB_TOKEN"] == SECRET

    # alice's run: the Job takes the Secret through envFrom; the value is nowhere in it
    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    with open(nb) as fh:
        saved = alice.post("/models", json={"name": "iris", "source": fh.read(), "filename": "iris.ipynb"})
    assert saved.status_code == 201, saved.text
    run = alice.post("/runs", json={"model": "iris"})
    assert run.status_code == 201, run.text
    job = json.loads(kubectl("-n", namespace, "get", "job", f"mlp-run-{run.json()['id']}", "-o", "json").stdout)
    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == [{"secretRef": {"name": name, "optional": True}}]
    assert not [e for e in container.get("env", []) if e["name"] in values]
    assert SECRET not in json.dumps(job) and "pw-2" not in json.dumps(job)
    deadline = time.time() + 60
    while alice.get(f"/runs/{run.json()['id']}").json()["status"] not in ("succeeded", "failed"):
        assert time.time() < deadline
        time.sleep(0.3)
    pods = kubectl("-n", namespace, "get", "pods", "-l", f"batch.kubernetes.io/job-name=mlp-run-{run.json()['id']}",
                   "-o", "json").stdout
    assert SECRET not in pods

    # delete: one key goes (with its annotation), the others stay
    assert alice.delete("/credentials/GITHUB_TOKEN").status_code == 204
    after = secret_of(namespace, name)
    assert "GITHUB_TOKEN" not in decoded(after) and decoded(after)["DB_PASSWORD"] == "pw-2"
    assert kcred.updated_annotation("GITHUB_TOKEN") not in after["metadata"]["annotations"]
    assert kcred.updated_annotation("DB_PASSWORD") in after["metadata"]["annotations"]
    assert alice.delete("/credentials/GITHUB_TOKEN").status_code == 404
    assert "GITHUB_TOKEN" not in [i["key"] for i in alice.get("/credentials").json()["items"]]
    assert admin.delete("/credentials/DB_PASSWORD", params={"user": "alice"}).status_code == 204

    assert answers and not [a for a in answers if SECRET in a or "pw-2" in a]
    assert SECRET not in server.log_path.read_text()


ROLE_FILE = ROOT / "deploy" / "rbac" / "platform-role.yaml"


async def test_backend_manages_credentials_as_the_platform_service_account(namespace, tmp_path):
    docs = [d for d in yaml.safe_load_all(ROLE_FILE.read_text()) if d]
    for doc in docs:
        doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            subject["namespace"] = namespace
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": docs}))
    client = KubeClient.from_kubeconfig(kubeconfig(), impersonate=f"system:serviceaccount:{namespace}:mlplatform")
    backend = KubernetesBackend(namespace, artifacts=mf.ArtifactStore(pvc=PVC, root=tmp_path), client=client,
                                watch=False)
    user = "Carol.Smith@example.com"  # not a valid name as is: sanitized, with a hash
    try:
        assert await backend.credential_keys(user) == {}
        first = await backend.put_credential(user, "TOKEN", "t-1")
        await backend.put_credential(user, "_ODD_NAME_", "o")
        keys = await backend.credential_keys(user)
        assert list(keys) == ["TOKEN", "_ODD_NAME_"] and keys["TOKEN"] == first
        assert await backend.credential_env(user) == {}  # never literal values: envFrom
        assert await backend.delete_credential(user, "TOKEN") is True
        assert await backend.delete_credential(user, "TOKEN") is False
        secret = secret_of(namespace, mf.credentials_secret_name(user))
        assert secret["metadata"]["name"].startswith("mlp-cred-carol-smith-example-com-")
        assert secret["metadata"]["annotations"]["mlplatform.io/user"] == user
        assert decoded(secret) == {"_ODD_NAME_": "o"}
    finally:
        await backend.close()
