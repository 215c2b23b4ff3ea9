"""The Helm chart helm/mlplatform against the real control plane of scripts/kube-up.sh (kwok nodes
mlp-cpu-0 and mlp-gpu-0, the latter with 4 nvidia.com/gpu and a GPU taint; kwok marks pods Running,
it runs no code, so the images need not exist).

`helm lint --strict`; the schema refuses typos naming them; `helm template` is accepted by the API
server (`kubectl apply --dry-run=server`); no secret appears in a pod spec; the hub's mounted config
loads; `helm install` brings every pod to Running, each service account can do what it needs and no
more (`kubectl auth can-i --as`), and `helm uninstall` removes the cluster-scoped objects.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetest import PVC, kubeconfig, kubectl, namespace_with_claim

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "helm" / "mlplatform"
HELM = ROOT / ".testenv" / "bin" / "helm"
RELEASE = "mlp"
FULLNAME = "mlp-mlplatform"

# Placeholders for a CPU size and a GPU size. Live, the GPU "whole node" is kept small: other suites
# share the one kwok GPU node, and a placeholder that cannot fit would stay Pending.
LIVE_VALUES = {
    "storage": {"existingClaim": PVC},
    "postgresql": {"persistence": {"storageClassName": "", "size": "1Gi"}},
    "scheduling": {"userPlaceholders": {
        "sizes": {"cpu-small": {"replicas": 1}, "gpu-1": {"replicas": 1}},
        "gpuNode": {"cpu": "1", "memory": "1Gi", "gpus": 1},
    }},
}


def helm(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    if not HELM.exists():
        pytest.fail(f"{HELM} is missing: run make kube-up")
    home = Path(tempfile.gettempdir()) / "mlp-helm-test-home"  # no writes to the user's helm dirs
    env = {**os.environ, "KUBECONFIG": kubeconfig(), "HELM_CACHE_HOME": str(home / "cache"),
           "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")}
    proc = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        pytest.fail(f"helm {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


def values_file(tmp_path: Path, values: dict[str, Any]) -> str:
    path = tmp_path / f"values-{uuid.uuid4().hex[:6]}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def render(tmp_path: Path, values: dict[str, Any] | None = None, namespace: str = "mlp-render",
           *extra: str) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", namespace]
    if values:
        args += ["--values", values_file(tmp_path, values)]
    out = helm(*args, *extra).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def find(docs: list[dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["kind"] == kind and doc["metadata"]["name"] == name:
            return doc
    pytest.fail(f"no {kind} {name} in {[(d['kind'], d['metadata']['name']) for d in docs]}")


def pod_specs(docs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    specs = []
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            specs.append(doc["spec"]["template"]["spec"])
    return specs


# -- without the control plane's state -------------------------------------------------------------


def test_lint_strict_and_schema_is_generated_from_the_platform_config():
    lint = helm("lint", "--strict", str(CHART))
    assert "0 chart(s) failed" in lint.stdout
    # values.schema.json's platformConfig is the pydantic model's: the chart accepts what the server does.
    check = subprocess.run([sys.executable, str(ROOT / "scripts" / "helm-schema.py"), "--check"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.parametrize(("flag", "named"), [
    ("hub.replicaz=2", "replicaz"),
    ("platformConfig.hardware[0].gpuz=1", "gpuz"),
    ("networkPolicy.enabeld=false", "enabeld"),
    ("proxy.service.type=Ingress", "type"),
])
def test_values_typo_is_refused_naming_it(flag, named):
    proc = helm("template", RELEASE, str(CHART), "--set", flag, check=False)
    assert proc.returncode != 0
    assert "schema" in proc.stderr and named in proc.stderr, proc.stderr


def test_platform_servers_share_the_claim_and_upgrade_old_then_new(tmp_path):
    """Several platform servers share one database (tests/kube/test_two_servers.py) and one data
    directory: the chart refuses more than one with artifactsUri (a data dir per pod), naming the
    values; an upgrade stops the old servers before the new ones start (old and new code never
    share the database)."""
    proc = helm("template", RELEASE, str(CHART), "--set", "platform.replicas=2",
                "--set", "platform.artifactsUri=s3://bucket/mlp", check=False)
    assert proc.returncode != 0
    assert "platform.replicas: 2 servers need one data directory on the shared claim" in proc.stderr, proc.stderr
    assert "platform.artifactsUri" in proc.stderr
    api = find(render(tmp_path), "Deployment", f"{FULLNAME}-api")
    assert api["spec"]["replicas"] == 1
    assert api["spec"]["strategy"] == {"type": "Recreate"}
    three = find(render(tmp_path, {"platform": {"replicas": 3}}), "Deployment", f"{FULLNAME}-api")
    assert three["spec"]["replicas"] == 3
    [data] = [v for v in three["spec"]["template"]["spec"]["volumes"] if v["name"] == "data"]
    assert "persistentVolumeClaim" in data, data
    stopped = find(render(tmp_path, {"platform": {"replicas": 0}}), "Deployment", f"{FULLNAME}-api")
    assert stopped["spec"]["replicas"] == 0


def test_placeholder_for_an_unknown_size_is_refused_naming_it():
    proc = helm("template", RELEASE, str(CHART), "--set", "scheduling.userPlaceholders.sizes.gpu-2.replicas=1",
                check=False)
    assert proc.returncode != 0
    assert "scheduling.userPlaceholders.sizes.gpu-2" in proc.stderr
    assert "cpu-large, cpu-small, gpu-1" in proc.stderr


def test_external_postgresql_needs_a_secret_and_runs_no_database(tmp_path):
    proc = helm("template", RELEASE, str(CHART), "--set", "postgresql.enabled=false", check=False)
    assert proc.returncode != 0 and "postgresql.external.secretName" in proc.stderr
    docs = render(tmp_path, {"postgresql": {"enabled": False, "external": {"secretName": "db-urls"}}})
    assert not [d for d in docs if d["kind"] == "StatefulSet"]
    api = find(docs, "Deployment", f"{FULLNAME}-api")["spec"]["template"]["spec"]["containers"][0]
    db = next(e for e in api["env"] if e["name"] == "MLP_DB_URL")
    assert db == {"name": "MLP_DB_URL", "valueFrom": {"secretKeyRef": {"name": "db-urls", "key": "platform-url"}}}
    hub = find(docs, "Deployment", f"{FULLNAME}-hub")["spec"]["template"]["spec"]["containers"][0]
    assert {"name": "db-urls", "key": "hub-url"} in [e.get("valueFrom", {}).get("secretKeyRef") for e in hub["env"]]


def test_rendered_chart_keeps_secrets_out_of_pod_specs_and_sizes_placeholders(tmp_path):
    values = {"scheduling": {"userPlaceholders": {"sizes": {"cpu-small": {"replicas": 2}, "gpu-1": {"replicas": 1}}}},
              "prePuller": {"extraImages": ["localhost/mlplatform/python:latest", "localhost/mlplatform/tb:1"]}}
    docs = render(tmp_path, values)
    secret = find(docs, "Secret", f"{FULLNAME}-secrets")
    secrets = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert set(secrets) >= {"hub-cookie-secret", "proxy-token", "platform-admin-token", "hub-service-token",
                            "postgresql-password", "platform-db-url", "hub-db-url"}
    others = json.dumps([d for d in docs if d["kind"] != "Secret"])
    for key, value in secrets.items():
        assert value not in others, f"{key} appears outside the Secret"

    # Pods hold no API token except the hub's, the platform API's and the awaiter's.
    for spec in pod_specs(docs):
        if spec.get("serviceAccountName") is None:
            assert spec["automountServiceAccountToken"] is False

    cpu = find(docs, "Deployment", f"{FULLNAME}-placeholder-cpu-small")["spec"]
    assert cpu["replicas"] == 2
    pod = cpu["template"]["spec"]
    assert pod["priorityClassName"] == f"mlp-render-{FULLNAME}-placeholders"
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "1", "memory": "2Gi"}
    gpu = find(docs, "Deployment", f"{FULLNAME}-placeholder-gpu-1")["spec"]["template"]["spec"]
    # A whole GPU node (gpuNode), not one GPU: the autoscaler keeps a spare node.
    assert gpu["containers"][0]["resources"]["requests"] == {"cpu": "15", "memory": "56Gi", "nvidia.com/gpu": "4"}
    assert gpu["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert gpu["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert not [d for d in docs if d["metadata"]["name"] == f"{FULLNAME}-placeholder-cpu-large"]

    users = find(docs, "PriorityClass", f"mlp-render-{FULLNAME}-users")
    placeholders = find(docs, "PriorityClass", f"mlp-render-{FULLNAME}-placeholders")
    assert placeholders["value"] < users["value"]

    # Every environment image once, plus the extra ones, in both pullers; the hook one is a hook.
    for name in ("hook", "continuous"):
        ds = find(docs, "DaemonSet", f"{FULLNAME}-{name}-image-puller")
        images = [c["image"] for c in ds["spec"]["template"]["spec"]["initContainers"]]
        assert images == ["localhost/mlplatform/python:latest", "localhost/mlplatform/tb:1"]
        assert ds["spec"]["template"]["spec"]["tolerations"] == [{"operator": "Exists"}]
    hook = find(docs, "DaemonSet", f"{FULLNAME}-hook-image-puller")
    assert hook["metadata"]["annotations"]["helm.sh/hook"] == "pre-install,pre-upgrade"
    awaiter = find(docs, "Job", f"{FULLNAME}-image-awaiter")
    assert int(awaiter["metadata"]["annotations"]["helm.sh/hook-weight"]) > int(
        hook["metadata"]["annotations"]["helm.sh/hook-weight"])

    # Notebook and run pods: the hub and the API, DNS, public addresses; no private range.
    for name in ("singleuser", "workloads"):
        policy = find(docs, "NetworkPolicy", f"{FULLNAME}-{name}")["spec"]
        blocks = [peer["ipBlock"] for rule in policy["egress"] for peer in rule.get("to", []) if "ipBlock" in peer]
        assert blocks == [{"cidr": "0.0.0.0/0", "except": ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16",
                                                            "169.254.0.0/16", "100.64.0.0/10"]}]
    db = find(docs, "NetworkPolicy", f"{FULLNAME}-postgresql")["spec"]
    allowed = [peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] for peer in db["ingress"][0]["from"]]
    assert allowed == ["hub", "platform-api"]


def test_hub_config_from_the_chart_loads_the_repository_config(tmp_path, monkeypatch):
    """The ConfigMap's chart_config.py + jupyterhub_config.py, loaded as JupyterHub loads them."""
    from traitlets.config.loader import PyFileConfigLoader

    docs = render(tmp_path)
    config_map = find(docs, "ConfigMap", f"{FULLNAME}-hub")["data"]
    assert config_map["jupyterhub_config.py"] == (ROOT / "jupyter-config" / "jupyterhub_config.py").read_text()
    for name, text in config_map.items():
        (tmp_path / name).write_text(text)
    platform = find(docs, "ConfigMap", f"{FULLNAME}-platform-config")["data"]["platform.yaml"]
    (tmp_path / "platform.yaml").write_text(platform)
    hub = find(docs, "Deployment", f"{FULLNAME}-hub")["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value", f"from-secret-{e['name']}") for e in hub["env"]}
    env.update(MLP_NAMESPACE="mlp-render", MLP_HUB_CONFIG=str(tmp_path / "jupyterhub_config.py"),
               MLP_PLATFORM_CONFIG=str(tmp_path / "platform.yaml"))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = PyFileConfigLoader("chart_config.py", str(tmp_path)).load_config()
    assert config.JupyterHub.db_url == "from-secret-JUPYTERHUB_DB_URL"
    assert config.JupyterHub.hub_connect_url == f"http://{FULLNAME}-hub.mlp-render.svc:8081"
    assert config.ConfigurableHTTPProxy.should_start is False
    assert config.ConfigurableHTTPProxy.api_url == f"http://{FULLNAME}-proxy-api.mlp-render.svc:8001"
    assert config.KubeSpawner.namespace == "mlp-render"
    assert config.KubeSpawner.automount_service_account_token is False
    assert config.KubeSpawner.volumes[0]["persistentVolumeClaim"]["claimName"] == f"{FULLNAME}-shared"
    [service] = [s for s in config.JupyterHub.services if s["name"] == "mlplatform"]
    assert service["url"] == f"http://{FULLNAME}-api.mlp-render.svc:8000"
    assert service["api_token"] == "from-secret-MLP_SERVICE_API_TOKEN"
    assert config.KubeSpawner.profile_list, "the platform's profiles"

    # Without the repository's file the hub stops, naming it.
    monkeypatch.setenv("MLP_HUB_CONFIG", str(tmp_path / "missing.py"))
    with pytest.raises(SystemExit, match="missing.py does not exist"):
        PyFileConfigLoader("chart_config.py", str(tmp_path)).load_config()


# -- against the control plane ---------------------------------------------------------------------


def test_template_is_accepted_by_the_api_server(tmp_path):
    with namespace_with_claim("mlp-helm-dry") as ns:
        values = {**LIVE_VALUES, "scheduling": {"userPlaceholders": {
            "sizes": {"cpu-small": {"replicas": 1}, "gpu-1": {"replicas": 1}}}}}
        out = helm("template", RELEASE, str(CHART), "--namespace", ns, "--values", values_file(tmp_path, values)).stdout
        applied = kubectl("apply", "--dry-run=server", "-n", ns, "-f", "-", input=out)
        assert applied.stdout.count("(server dry run)") == len([d for d in yaml.safe_load_all(out) if d])


def postgres_volume(ns: str) -> dict[str, Any]:
    """A volume bound ahead to the StatefulSet's claim (the rig has no StorageClass)."""
    return {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": f"{ns}-pg"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "hostPath": {"path": f"/srv/{ns}-pg"},
                 "claimRef": {"namespace": ns, "name": f"data-{FULLNAME}-postgresql-0"}},
    }


def can_i(ns: str, sa: str, *what: str) -> bool:
    """kubectl auth can-i as the service account (a subresource is --subresource=X: "pods/exec" would
    mean the pod named exec)."""
    proc = kubectl("auth", "can-i", *what, f"--as=system:serviceaccount:{ns}:{sa}", check=False)
    answer = proc.stdout.strip()
    assert answer in ("yes", "no"), f"kubectl auth can-i {' '.join(what)}: {proc.stdout} {proc.stderr}"
    return answer == "yes"


def test_install_runs_every_pod_and_each_service_account_has_what_it_needs_and_no_more(tmp_path):
    with namespace_with_claim("mlp-helm") as ns:
        kubectl("apply", "-f", "-", input=json.dumps(postgres_volume(ns)))
        try:
            helm("install", RELEASE, str(CHART), "--namespace", ns, "--values", values_file(tmp_path, LIVE_VALUES),
                 "--wait", "--timeout", "200s", timeout=260)
            pods = json.loads(kubectl("-n", ns, "get", "pods", "-o", "json").stdout)["items"]
            # The awaiter Job's pod (a hook, deleted on success) may still be going away.
            pods = [p for p in pods if not any(o["kind"] == "Job" for o in p["metadata"].get("ownerReferences", []))]
            phases = {p["metadata"]["name"]: p["status"].get("phase") for p in pods}
            assert set(phases.values()) == {"Running"}, phases
            components = sorted(p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods)
            assert components == sorted(["hub", "proxy", "platform-api", "postgresql", "user-placeholder",
                                         "user-placeholder", "continuous-image-puller",
                                         "continuous-image-puller"]), components
            nodes = {p["metadata"]["labels"].get("mlplatform.io/hardware"): p["spec"]["nodeName"] for p in pods
                     if p["metadata"]["labels"]["app.kubernetes.io/component"] == "user-placeholder"}
            assert nodes == {"cpu-small": "mlp-cpu-0", "gpu-1": "mlp-gpu-0"}
            pullers = {p["spec"]["nodeName"] for p in pods
                       if p["metadata"]["labels"]["app.kubernetes.io/component"] == "continuous-image-puller"}
            assert pullers == {"mlp-cpu-0", "mlp-gpu-0"}
            # The hook puller and its awaiter are gone once the images are pulled.
            hooks = kubectl("-n", ns, "get", "daemonsets,jobs", "-o", "name").stdout.split()
            assert hooks == [f"daemonset.apps/{FULLNAME}-continuous-image-puller"], hooks

            # Notebook and run pods' "public addresses" leave out the Kubernetes API and the database.
            for name in ("singleuser", "workloads"):
                policy = json.loads(kubectl("-n", ns, "get", f"networkpolicy/{FULLNAME}-{name}", "-o", "json").stdout)
                closed = [ipaddress.ip_network(cidr) for rule in policy["spec"]["egress"]
                          for peer in rule.get("to", []) for cidr in peer.get("ipBlock", {}).get("except", [])]
                for svc_ns, svc in (("default", "kubernetes"), (ns, f"{FULLNAME}-postgresql")):
                    ip = ipaddress.ip_address(kubectl("-n", svc_ns, "get", f"service/{svc}", "-o",
                                                      "jsonpath={.spec.clusterIP}").stdout)
                    assert any(ip in net for net in closed), f"{name}: {svc} at {ip} is not closed"

            hub, api = f"{FULLNAME}-hub", f"{FULLNAME}-api"
            for verb in (["create", "pods"], ["delete", "pods"], ["watch", "pods"], ["list", "events"],
                         ["get", "secrets"], ["create", "secrets"], ["delete", "secrets"],
                         ["create", "persistentvolumeclaims"], ["create", "services"]):
                assert can_i(ns, hub, *verb, "-n", ns), f"hub cannot {verb}"
            for verb in (["create", "pods", "--subresource=exec"], ["get", "pods", "--subresource=log"],
                         ["list", "secrets"], ["watch", "secrets"], ["list", "nodes"],
                         ["create", "pods", "-n", "default"], ["create", "deployments.apps"],
                         ["create", "jobs.batch"], ["create", "rolebindings.rbac.authorization.k8s.io"]):
                assert not can_i(ns, hub, *verb, *([] if "-n" in verb else ["-n", ns])), f"hub can {verb}"

            for verb in (["create", "jobs.batch"], ["delete", "jobs.batch"], ["get", "pods", "--subresource=log"],
                         ["watch", "pods"],
                         ["create", "deployments.apps"], ["update", "deployments.apps", "--subresource=scale"],
                         ["list", "replicasets.apps"], ["create", "services"], ["create", "secrets"],
                         ["get", "secrets"], ["create", "cronjobs.batch"],
                         ["create", "horizontalpodautoscalers.autoscaling"], ["watch", "events"]):
                assert can_i(ns, api, *verb, "-n", ns), f"platform cannot {verb}"
            assert can_i(ns, api, "create", "tokenreviews.authentication.k8s.io")
            for verb in (["create", "pods", "--subresource=exec"], ["create", "pods", "--subresource=portforward"],
                         ["list", "secrets"], ["watch", "secrets"], ["create", "pods"], ["list", "nodes"],
                         ["create", "configmaps"], ["create", "jobs.batch", "-n", "default"],
                         ["get", "pods", "-n", "kube-system"], ["create", "roles.rbac.authorization.k8s.io"],
                         ["create", "priorityclasses.scheduling.k8s.io"]):
                assert not can_i(ns, api, *verb, *([] if "-n" in verb else ["-n", ns])), f"platform can {verb}"

            # An upgrade (its pre-upgrade pull and awaiter included) keeps the generated tokens and passwords.
            secret = f"secret/{FULLNAME}-secrets"
            before = json.loads(kubectl("-n", ns, "get", secret, "-o", "json").stdout)["data"]
            helm("upgrade", RELEASE, str(CHART), "--namespace", ns, "--values", values_file(tmp_path, LIVE_VALUES),
                 "--timeout", "150s", timeout=200)
            assert json.loads(kubectl("-n", ns, "get", secret, "-o", "json").stdout)["data"] == before

            helm("uninstall", RELEASE, "--namespace", ns, "--wait", "--timeout", "90s", timeout=120)
            left = kubectl("get", "priorityclasses,clusterroles,clusterrolebindings", "-o", "name").stdout
            assert f"{ns}-{FULLNAME}" not in left
            assert kubectl("-n", ns, "get", "deployments,statefulsets,daemonsets", "-o", "name").stdout.strip() == ""
        finally:
            helm("uninstall", RELEASE, "--namespace", ns, "--no-hooks", check=False)
            kubectl("delete", "pv", f"{ns}-pg", "--wait=false", check=False)
