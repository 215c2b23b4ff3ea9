"""The kubernetes backend's pure manifest builders, against literal expected dicts
(as kubespawner tests make_pod) plus targeted checks of what matters most."""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import pytest

from mlplatform_server.backends.base import DeploymentSpec, Hardware, RunSpec
from mlplatform_server.backends.kubernetes.manifests import (
    ArtifactStore,
    cpu_quantity,
    job_name,
    make_cronjob,
    make_deployment,
    make_headless_service,
    make_hpa,
    make_job,
    make_secret,
    make_service,
    pin_image,
)
from mlplatform_server.backends.kubernetes.names import sanitize_label_value, sanitize_name

DATA = Path("/srv/mlp")
RUN_ID = "4f2a9c0d1e"
TOKEN = "mlprun_s3cr3t-t0ken-value"
DIGEST = "sha256:" + "ab" * 32
GPU1 = Hardware(
    name="gpu-1",
    cpu=8,
    memory="32Gi",
    gpus=1,
    gpu_type="nvidia-tesla-t4",
    node_selector={"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
)
CPU_SMALL = Hardware(name="cpu-small", cpu=0.5, memory="2Gi")
PVC = ArtifactStore(pvc="mlp-data", root=DATA)
NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def run_spec(hardware: Hardware = GPU1, **kw) -> RunSpec:
    run_dir = DATA / "runs" / RUN_ID
    module = DATA / "models" / "iris" / "v3" / "model.py"
    values = dict(
        run_id=RUN_ID,
        action="train",
        user="alice",
        model="iris",
        version="v3",
        module_path=module,
        run_dir=run_dir,
        hyperparameters={"C": 0.5},
        hardware=hardware,
        image=f"registry.local:5000/mlp/env-gpu:2.1@{DIGEST}",
        env={
            "MLP_RUN_ID": RUN_ID,
            "MLP_URL": "http://127.0.0.1:8585",
            "MLP_MODULE_PATH": str(module),
            "MLP_HYPERPARAMETERS": '{"C": 0.5}',
            "MLP_ARTIFACTS": str(run_dir / "artifacts"),
            "MLP_RESULT_PATH": str(run_dir / "result.json"),
            "MLP_RUN_TOKEN": TOKEN,
            "MLP_TOKEN": "platform-admin-token",
        },
        timeout_seconds=7200,
    )
    values.update(kw)
    return RunSpec(**values)


def job_for(spec: RunSpec, **kw) -> dict:
    options = dict(
        namespace="ml",
        image=None,
        artifacts=PVC,
        secret_name="mlp-cred-alice",
        priority_class="mlp-training",
        api_url="http://mlplatform.mlp-system.svc:8585",
    )
    options.update(kw)
    return make_job(spec, **options)


# The pod-bound token of the platform's audience the runtime reports with (no Secret, no API token).
RUN_TOKEN_VOLUME = {
    "name": "mlp-run-token",
    "projected": {"sources": [{"serviceAccountToken": {"audience": "mlplatform", "expirationSeconds": 3600,
                                                       "path": "token"}}]},
}

LABELS = {
    "app.kubernetes.io/managed-by": "mlplatform",
    "mlplatform.io/run-id": RUN_ID,
    "mlplatform.io/user": "alice",
    "mlplatform.io/model": "iris",
    "mlplatform.io/version": "v3",
    "mlplatform.io/kind": "train",
}
SECURITY = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "runAsGroup": 1000,
    "fsGroup": 1000,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY = {
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "readOnlyRootFilesystem": True,
}


def test_gpu1_job_literal():
    assert job_for(run_spec()) == {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": "mlp-run-4f2a9c0d1e",
            "namespace": "ml",
            "labels": LABELS,
            "annotations": {"mlplatform.io/user": "alice"},
        },
        "spec": {
            "backoffLimit": 3,
            "ttlSecondsAfterFinished": 3600,
            "activeDeadlineSeconds": 7200,
            "podFailurePolicy": {
                "rules": [
                    {
                        "action": "FailJob",
                        "onExitCodes": {"containerName": "runtime", "operator": "In", "values": [1, 2]},
                    },
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": {
                "metadata": {"labels": LABELS, "annotations": {"mlplatform.io/user": "alice"}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": SECURITY,
                    "priorityClassName": "mlp-training",
                    "nodeSelector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "containers": [
                        {
                            "name": "runtime",
                            "image": f"registry.local:5000/mlp/env-gpu@{DIGEST}",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-m", "mlplatform_server.runtime", "train"],
                            "workingDir": "/mlp/run",
                            "env": [
                                {"name": "MLP_RUN_ID", "value": RUN_ID},
                                {"name": "MLP_URL", "value": "http://mlplatform.mlp-system.svc:8585"},
                                {"name": "MLP_MODULE_PATH", "value": "/mlp/code/model.py"},
                                {"name": "MLP_HYPERPARAMETERS", "value": '{"C": 0.5}'},
                                {"name": "MLP_ARTIFACTS", "value": "/mlp/run/artifacts"},
                                {"name": "MLP_RESULT_PATH", "value": "/mlp/run/result.json"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                                {"name": "HOME", "value": "/tmp"},
                                {"name": "MLP_RUN_TOKEN_FILE", "value": "/var/run/secrets/mlplatform/token"},
                            ],
                            "envFrom": [{"secretRef": {"name": "mlp-cred-alice", "optional": True}}],
                            "resources": {
                                "requests": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                                "limits": {"cpu": "8", "memory": "32Gi", "nvidia.com/gpu": "1"},
                            },
                            "securityContext": CONTAINER_SECURITY,
                            "volumeMounts": [
                                {"name": "tmp", "mountPath": "/tmp"},
                                {
                                    "name": "data",
                                    "mountPath": "/mlp/code",
                                    "subPath": "models/iris/v3",
                                    "readOnly": True,
                                },
                                {"name": "data", "mountPath": "/mlp/run", "subPath": f"runs/{RUN_ID}"},
                                {"name": "mlp-run-token", "mountPath": "/var/run/secrets/mlplatform",
                                 "readOnly": True},
                            ],
                        }
                    ],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "mlp-data"}},
                        RUN_TOKEN_VOLUME,
                    ],
                },
            },
        },
    }


def test_no_literal_token_or_platform_secret_in_job():
    text = json.dumps(job_for(run_spec()))
    assert TOKEN not in text
    assert "platform-admin-token" not in text
    assert "MLP_TOKEN" not in text


def test_cpu_job_has_no_gpu_and_no_toleration_or_deadline():
    job = job_for(run_spec(CPU_SMALL, timeout_seconds=None, image="python:3.12-slim"), priority_class=None,
                  secret_name=None)
    pod = job["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "2Gi"},
        "limits": {"cpu": "500m", "memory": "2Gi"},
    }
    assert container["image"] == "python:3.12-slim"
    assert container["imagePullPolicy"] == "Always"
    assert "envFrom" not in container
    for key in ("tolerations", "nodeSelector", "priorityClassName", "subdomain"):
        assert key not in pod
    assert "activeDeadlineSeconds" not in job["spec"]
    assert "completionMode" not in job["spec"]


def test_gpu_toleration_added_when_the_size_has_none():
    bare = Hardware(name="gpu-2", cpu=4, memory="16Gi", gpus=2)
    pod = job_for(run_spec(bare))["spec"]["template"]["spec"]
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert "nodeSelector" not in pod


def test_pod_failure_policy_user_errors_fail_evictions_ignored():
    rules = job_for(run_spec())["spec"]["podFailurePolicy"]["rules"]
    assert {"action": "FailJob", "onExitCodes": {"containerName": "runtime", "operator": "In", "values": [1, 2]}} in rules
    assert any(r["action"] == "Ignore" and r["onPodConditions"][0]["type"] == "DisruptionTarget" for r in rules)


def test_distributed_indexed_job_and_headless_service():
    size = Hardware(name="gpu-2x4", cpu=32, memory="128Gi", gpus=4, nodes=2)
    job = job_for(run_spec(size))
    name = "mlp-run-4f2a9c0d1e"
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 2
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == name
    container = pod["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["MASTER_ADDR"]["value"] == f"{name}-0.{name}"
    assert env["MASTER_PORT"]["value"] == "29500"
    assert env["WORLD_SIZE"]["value"] == "8"
    assert env["NPROC_PER_NODE"]["value"] == "4"
    assert env["NNODES"]["value"] == "2"
    assert env["NODE_RANK"] == {
        "name": "NODE_RANK",
        "valueFrom": {"fieldRef": {"fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}},
    }
    assert container["ports"] == [{"name": "rendezvous", "containerPort": 29500}]
    created = {**job, "metadata": {**job["metadata"], "uid": "1234-uid"}}
    assert make_headless_service(job, owner=created) == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": "ml",
            "labels": LABELS,
            "ownerReferences": [
                {"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": "1234-uid", "blockOwnerDeletion": False}
            ],
        },
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {"batch.kubernetes.io/job-name": name},
            "ports": [{"name": "rendezvous", "port": 29500, "targetPort": 29500}],
        },
    }


def test_distributed_cpu_world_size_is_nodes():
    size = Hardware(name="cpu-3n", cpu=2, memory="4Gi", nodes=3)
    env = {e["name"]: e.get("value") for e in job_for(run_spec(size))["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (env["WORLD_SIZE"], env["NPROC_PER_NODE"]) == ("3", "1")


def test_one_node_with_several_gpus_runs_torchrun_inside_the_pod():
    size = Hardware(name="gpu-4", cpu=32, memory="128Gi", gpus=4)
    job = job_for(run_spec(size))
    assert "completionMode" not in job["spec"] and job["spec"].get("completions", 1) == 1
    env = {e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert {k: env[k] for k in ("MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "NNODES", "NPROC_PER_NODE", "NODE_RANK")} \
        == {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500", "WORLD_SIZE": "4", "NNODES": "1",
            "NPROC_PER_NODE": "4", "NODE_RANK": "0"}
    one_gpu = {e["name"] for e in job_for(run_spec(GPU1))["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert not one_gpu & {"MASTER_ADDR", "WORLD_SIZE", "NPROC_PER_NODE"}  # one process: no rendezvous


def test_batch_predict_mounts_source_artifacts_inputs_outputs():
    source = DATA / "runs" / "trainrun1" / "artifacts"
    spec = run_spec(
        CPU_SMALL,
        action="batch-predict",
        source_artifacts=source,
        inputs=DATA / "datasets" / "in.csv",
        outputs=DATA / "outputs" / "b1" / "out.csv",
        env={
            **run_spec().env,
            "MLP_ARTIFACTS": str(source),
            "MLP_INPUTS": str(DATA / "datasets" / "in.csv"),
            "MLP_OUTPUTS": str(DATA / "outputs" / "b1" / "out.csv"),
        },
    )
    container = job_for(spec)["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["MLP_ARTIFACTS"] == "/mlp/artifacts"
    assert env["MLP_INPUTS"] == "/mlp/input/in.csv"
    assert env["MLP_OUTPUTS"] == "/mlp/output/out.csv"
    assert container["command"][-1] == "batch-predict"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/mlp/artifacts"] == {
        "name": "data", "mountPath": "/mlp/artifacts", "subPath": "runs/trainrun1/artifacts", "readOnly": True,
    }
    assert mounts["/mlp/input/in.csv"]["subPath"] == "datasets/in.csv"
    assert mounts["/mlp/output"] == {"name": "data", "mountPath": "/mlp/output", "subPath": "outputs/b1"}


def test_object_store_artifacts_use_uri_not_volume():
    job = job_for(run_spec(CPU_SMALL), artifacts=ArtifactStore(uri="s3://bucket/mlp/"))
    pod = job["spec"]["template"]["spec"]
    assert pod["volumes"] == [
        {"name": "tmp", "emptyDir": {}},
        {"name": "code", "emptyDir": {}},
        {"name": "run", "emptyDir": {}},
        RUN_TOKEN_VOLUME,
    ]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["MLP_ARTIFACTS_URI"] == f"s3://bucket/mlp/runs/{RUN_ID}"
    assert env["MLP_MODEL_URI"] == "s3://bucket/mlp/models/iris/v3"
    assert env["MLP_ARTIFACTS"] == "/mlp/run/artifacts"
    assert "persistentVolumeClaim" not in json.dumps(job)


def test_artifact_store_validation_and_paths_outside_the_volume():
    with pytest.raises(ValueError):
        ArtifactStore()
    with pytest.raises(ValueError):
        ArtifactStore(pvc="x", uri="s3://b")
    with pytest.raises(ValueError):
        ArtifactStore(pvc="x")
    with pytest.raises(ValueError, match="not on the shared artifact volume"):
        job_for(run_spec(run_dir=Path("/elsewhere/run")))


def test_no_image_is_refused():
    with pytest.raises(ValueError, match="no container image"):
        job_for(run_spec(image=None))


@pytest.mark.parametrize(
    "image, pinned",
    [
        (f"reg:5000/a/b:1@{DIGEST}", f"reg:5000/a/b@{DIGEST}"),
        (f"b@{DIGEST}", f"b@{DIGEST}"),
        ("reg:5000/a/b:1", "reg:5000/a/b:1"),
    ],
)
def test_pin_image(image, pinned):
    assert pin_image(image) == pinned


def test_cpu_quantity():
    assert [cpu_quantity(c) for c in (0.5, 1, 2.0, 1.25, 0.1)] == ["500m", "1", "2", "1250m", "100m"]


# -- names -------------------------------------------------------------------------------------


def test_sanitize_name_keeps_valid_names():
    assert sanitize_name("mlp-run-abc123") == "mlp-run-abc123"


def test_sanitize_name_changes_get_a_hash_so_they_never_collide():
    a, b = sanitize_name("Alice"), sanitize_name("alice")
    assert b == "alice" and a.startswith("alice-") and a != b
    assert sanitize_name("a_b") != sanitize_name("a.b")
    assert sanitize_name("mlp-dep-My Model!") == sanitize_name("mlp-dep-My Model!")  # stable
    assert re.fullmatch(r"mlp-dep-my-model-[0-9a-f]{8}", sanitize_name("mlp-dep-My Model!"))


def test_sanitize_name_truncates_with_hash():
    long = "mlp-run-" + "x" * 100
    name = sanitize_name(long)
    assert len(name) == 63 and NAME_RE.match(name)
    assert name != sanitize_name(long + "y")
    assert len(sanitize_name(long, 52)) <= 52
    for text in ("---", "ÄÖÜ", "_x_", "A" * 70 + "-", "9lives"):
        assert NAME_RE.match(sanitize_name(text)), text


def test_job_name_fits_indexed_hostnames():
    name = job_name("r" * 80)
    assert len(name) <= 52 and NAME_RE.match(name)


def test_sanitize_label_value():
    assert sanitize_label_value("alice") == "alice"
    assert sanitize_label_value("Alice.B") == "Alice.B"
    value = sanitize_label_value("alice@example.com")
    assert re.fullmatch(r"alice-example\.com-[0-9a-f]{8}", value)
    long = sanitize_label_value("u" * 100)
    assert len(long) <= 63 and re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?", long)
    job = job_for(run_spec(user="Bob Smith <bob@x.org>"))
    assert job["metadata"]["labels"]["mlplatform.io/user"].startswith("Bob-Smith-bob-x.org-")
    assert job["metadata"]["annotations"]["mlplatform.io/user"] == "Bob Smith <bob@x.org>"


# -- secrets -----------------------------------------------------------------------------------


def test_make_secret_string_data():
    assert make_secret("mlp-run-x-token", "ml", {"MLP_RUN_TOKEN": "t"}, {"mlplatform.io/run-id": "x"}) == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": "mlp-run-x-token",
            "namespace": "ml",
            "labels": {"app.kubernetes.io/managed-by": "mlplatform", "mlplatform.io/run-id": "x"},
        },
        "type": "Opaque",
        "stringData": {"MLP_RUN_TOKEN": "t"},
    }


def test_make_secret_base64_data():
    secret = make_secret("c", "ml", {"AWS_KEY": "k€y"}, {}, encode=True)
    assert secret["data"] == {"AWS_KEY": base64.b64encode("k€y".encode()).decode()}
    assert "stringData" not in secret


# -- deployments -------------------------------------------------------------------------------


def dep_spec(**kw) -> DeploymentSpec:
    module = DATA / "models" / "iris" / "v3" / "model.py"
    artifacts = DATA / "runs" / RUN_ID / "artifacts"
    values = dict(
        deployment_id="d123",
        name="iris-api",
        user="alice",
        model="iris",
        version="v3",
        module_path=module,
        artifacts=artifacts,
        hardware=CPU_SMALL,
        image=f"registry.local:5000/mlp/env:1@{DIGEST}",
        env={
            "MLP_MODULE_PATH": str(module),
            "MLP_ARTIFACTS": str(artifacts),
            "MLP_RUN_ID": RUN_ID,
            "MLP_HYPERPARAMETERS": "{}",
        },
        replicas=2,
    )
    values.update(kw)
    return DeploymentSpec(**values)


DEP_LABELS = {
    "app.kubernetes.io/managed-by": "mlplatform",
    "mlplatform.io/deployment": "iris-api",
    "mlplatform.io/deployment-id": "d123",
    "mlplatform.io/user": "alice",
    "mlplatform.io/model": "iris",
    "mlplatform.io/version": "v3",
}
DEP_SELECTOR = {"app.kubernetes.io/managed-by": "mlplatform", "mlplatform.io/deployment": "iris-api"}


def test_make_deployment_literal():
    probe = {"httpGet": {"path": "/ping", "port": "http"}}
    assert make_deployment(dep_spec(), namespace="ml", image=None, artifacts=PVC, secret_name=None) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "mlp-dep-iris-api",
            "namespace": "ml",
            "labels": DEP_LABELS,
            "annotations": {"mlplatform.io/user": "alice"},
        },
        "spec": {
            "replicas": 2,
            "revisionHistoryLimit": 5,
            "selector": {"matchLabels": DEP_SELECTOR},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {"labels": DEP_LABELS, "annotations": {"mlplatform.io/user": "alice"}},
                "spec": {
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                    "securityContext": SECURITY,
                    "terminationGracePeriodSeconds": 40,
                    "containers": [
                        {
                            "name": "runtime",
                            "image": f"registry.local:5000/mlp/env@{DIGEST}",
                            "imagePullPolicy": "IfNotPresent",
                            "command": ["python3", "-m", "mlplatform_server.runtime", "serve"],
                            "env": [
                                {"name": "MLP_MODULE_PATH", "value": "/mlp/code/model.py"},
                                {"name": "MLP_ARTIFACTS", "value": "/mlp/artifacts"},
                                {"name": "MLP_RUN_ID", "value": RUN_ID},
                                {"name": "MLP_HYPERPARAMETERS", "value": "{}"},
                                {"name": "PYTHONUNBUFFERED", "value": "1"},
                                {"name": "HOME", "value": "/tmp"},
                                {"name": "MLP_PORT", "value": "8080"},
                                {"name": "MLP_HOST", "value": "0.0.0.0"},
                                {"name": "MLP_WORKERS", "value": "1"},
                            ],
                            "ports": [{"name": "http", "containerPort": 8080}],
                            "resources": {
                                "requests": {"cpu": "500m", "memory": "2Gi"},
                                "limits": {"cpu": "500m", "memory": "2Gi"},
                            },
                            "securityContext": CONTAINER_SECURITY,
                            "volumeMounts": [
                                {"name": "tmp", "mountPath": "/tmp"},
                                {"name": "data", "mountPath": "/mlp/code", "subPath": "models/iris/v3", "readOnly": True},
                                {
                                    "name": "data",
                                    "mountPath": "/mlp/artifacts",
                                    "subPath": f"runs/{RUN_ID}/artifacts",
                                    "readOnly": True,
                                },
                            ],
                            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 60},
                            "readinessProbe": {**probe, "periodSeconds": 5, "failureThreshold": 3},
                            "livenessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 6},
                        }
                    ],
                    "volumes": [
                        {"name": "tmp", "emptyDir": {}},
                        {"name": "data", "persistentVolumeClaim": {"claimName": "mlp-data"}},
                    ],
                },
            },
        },
    }


def test_new_version_keeps_the_deployment_name_and_selector():
    one = make_deployment(dep_spec(), namespace="ml", image=None, artifacts=PVC, secret_name=None)
    two = make_deployment(dep_spec(deployment_id="d456", version="v4"), namespace="ml", image=None,
                          artifacts=PVC, secret_name=None)
    assert one["metadata"]["name"] == two["metadata"]["name"]
    assert one["spec"]["selector"] == two["spec"]["selector"]
    assert two["spec"]["template"]["metadata"]["labels"]["mlplatform.io/version"] == "v4"


def test_gpu_deployment_tolerates_and_selects():
    dep = make_deployment(dep_spec(hardware=GPU1), namespace="ml", image=None, artifacts=PVC,
                          secret_name="mlp-cred-alice", priority_class="mlp-serving")
    pod = dep["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert pod["priorityClassName"] == "mlp-serving"
    assert pod["containers"][0]["envFrom"] == [{"secretRef": {"name": "mlp-cred-alice", "optional": True}}]


def test_make_service_literal():
    assert make_service(dep_spec(), namespace="ml") == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "mlp-dep-iris-api", "namespace": "ml", "labels": DEP_LABELS},
        "spec": {
            "type": "ClusterIP",
            "selector": DEP_SELECTOR,
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def test_make_hpa_literal():
    assert make_hpa(dep_spec(), namespace="ml", min_replicas=1, max_replicas=4) == {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "mlp-dep-iris-api", "namespace": "ml", "labels": DEP_LABELS},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "mlp-dep-iris-api"},
            "minReplicas": 1,
            "maxReplicas": 4,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}
            ],
        },
    }
    with pytest.raises(ValueError):
        make_hpa(dep_spec(), namespace="ml", min_replicas=3, max_replicas=2)


def test_make_cronjob():
    spec = run_spec(CPU_SMALL, action="batch-predict")
    cron = make_cronjob(spec, name="Nightly Iris", schedule="0 3 * * *", namespace="ml", image=None,
                        artifacts=PVC, secret_name=None, priority_class=None,
                        time_zone="Europe/Paris")
    labels = {**LABELS, "mlplatform.io/kind": "batch-predict",
              "mlplatform.io/schedule": cron["metadata"]["labels"]["mlplatform.io/schedule"]}
    assert cron["metadata"]["name"].startswith("mlp-cron-nightly-iris-")
    assert len(cron["metadata"]["name"]) <= 52
    assert cron["metadata"]["labels"] == labels
    job = job_for(spec, secret_name=None, priority_class=None, api_url=None)
    expected_job_spec = {**job["spec"], "template": {**job["spec"]["template"],
                                                     "metadata": {**job["spec"]["template"]["metadata"],
                                                                  "labels": labels}}}
    assert cron["spec"] == {
        "schedule": "0 3 * * *",
        "timeZone": "Europe/Paris",
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": 300,
        "successfulJobsHistoryLimit": 3,
        "failedJobsHistoryLimit": 3,
        "jobTemplate": {"metadata": {"labels": labels}, "spec": expected_job_spec},
    }
    assert TOKEN not in json.dumps(cron)


# -- status mapping from pod status (pure; the kube suite covers what kwok can produce) ----------

from mlplatform_server.backends.kubernetes.backend import _pod_problems  # noqa: E402


def pod(phase: str, **status) -> dict:
    return {"metadata": {"name": "p"}, "status": {"phase": phase, **status}}


def test_image_pull_failure_is_a_pending_reason():
    waiting = pod("Pending", conditions=[{"type": "PodScheduled", "status": "True"}], containerStatuses=[
        {"name": "runtime", "image": "reg/x@sha256:1", "state": {"waiting": {
            "reason": "ImagePullBackOff", "message": "Back-off pulling image \"reg/x@sha256:1\""}}}])
    assert _pod_problems([waiting], "reg/x@sha256:1") == (
        0, 'the image reg/x@sha256:1 could not be pulled: Back-off pulling image "reg/x@sha256:1"', None)


def test_unschedulable_and_evicted_reasons():
    pending = pod("Pending", conditions=[{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                          "message": "0/2 nodes are available: 2 Insufficient nvidia.com/gpu."}])
    evicted = pod("Failed", reason="Evicted", message="The node was low on resource: memory.")
    running, reason, oom = _pod_problems([evicted, pending], None)
    assert running == 0 and oom is None
    assert reason == ("evicted (The node was low on resource: memory.); retrying; "
                      "cannot be scheduled: 0/2 nodes are available: 2 Insufficient nvidia.com/gpu.")


def test_oom_kill_is_reported_even_in_last_state():
    restarted = pod("Running", containerStatuses=[{"name": "runtime", "state": {"running": {}},
                                                   "lastState": {"terminated": {"reason": "OOMKilled", "exitCode": 137}}}])
    assert _pod_problems([restarted], None)[2] == {"reason": "OOMKilled", "exitCode": 137}
    assert _pod_problems([pod("Running")], None) == (1, None, None)
