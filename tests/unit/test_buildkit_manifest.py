"""The buildkit builder's pure parts: the Job against a literal dict, the push Secret, the
buildkitd config, and reading a Job's outcome from literal Job/Pod objects."""

from __future__ import annotations

import base64
import json

import pytest

from mlplatform_server.builders import BUILDERS
from mlplatform_server.builders.buildkit import (
    buildkitd_toml,
    docker_config_for,
    hopeless_reason,
    job_outcome,
    make_buildkit_job,
    make_push_secret,
    plain_http_hosts,
    pod_failure,
)
from mlplatform_server.config import BuildKitSettings, parse_config
from mlplatform_server.errors import ConfigError

BUILD_ID = "0123456789ab"
LABELS = {
    "app.kubernetes.io/managed-by": "mlplatform",
    "app.kubernetes.io/component": "build",
    "mlplatform.io/build-id": BUILD_ID,
    "mlplatform.io/user": "alice",
    "mlplatform.io/model": "iris",
    "mlplatform.io/version": "3",
}

EXPECTED_JOB = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {
        "name": "mlp-build-0123456789ab",
        "namespace": "ml",
        "labels": LABELS,
        "annotations": {"mlplatform.io/user": "alice"},
    },
    "spec": {
        "backoffLimit": 0,
        "activeDeadlineSeconds": 1800,
        "ttlSecondsAfterFinished": 600,
        "template": {
            "metadata": {"labels": LABELS, "annotations": {"mlplatform.io/user": "alice"}},
            "spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                "enableServiceLinks": False,
                "securityContext": {
                    "runAsNonRoot": True,
                    "runAsUser": 1000,
                    "runAsGroup": 1000,
                    "fsGroup": 1000,
                    "seccompProfile": {"type": "RuntimeDefault"},
                },
                "initContainers": [{
                    "name": "unpack",
                    "image": "moby/buildkit:v0.24.0-rootless",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["tar", "-x", "-f", "/mlp/build/context.tar", "-C", "/mlp/workspace"],
                    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"},
                                  "limits": {"cpu": "1", "memory": "512Mi"}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "capabilities": {"drop": ["ALL"]},
                        "readOnlyRootFilesystem": True,
                    },
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/mlp/build", "subPath": "builds/0123456789ab",
                         "readOnly": True},
                        {"name": "workspace", "mountPath": "/mlp/workspace"},
                    ],
                }],
                "containers": [{
                    "name": "buildkit",
                    "image": "moby/buildkit:v0.24.0-rootless",
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["buildctl-daemonless.sh"],
                    "args": [
                        "build",
                        "--frontend", "dockerfile.v0",
                        "--local", "context=/mlp/workspace",
                        "--local", "dockerfile=/mlp/workspace",
                        "--output", "type=image,name=127.0.0.1:5000/mlplatform/models/iris:3,push=true,"
                                    "registry.insecure=true",
                        "--metadata-file", "/mlp/out/metadata.json",
                    ],
                    "env": [
                        {"name": "BUILDKITD_FLAGS",
                         "value": "--oci-worker-no-process-sandbox --config=/mlp/build/buildkitd.toml"},
                        {"name": "DOCKER_CONFIG", "value": "/home/user/.docker"},
                    ],
                    "resources": {
                        "requests": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "20Gi"},
                        "limits": {"cpu": "2", "memory": "4Gi", "ephemeral-storage": "20Gi"},
                    },
                    "securityContext": {
                        "runAsNonRoot": True,
                        "runAsUser": 1000,
                        "runAsGroup": 1000,
                        "privileged": False,
                        "allowPrivilegeEscalation": True,
                        "seccompProfile": {"type": "Unconfined"},
                        "appArmorProfile": {"type": "Unconfined"},
                    },
                    "volumeMounts": [
                        {"name": "data", "mountPath": "/mlp/build", "subPath": "builds/0123456789ab",
                         "readOnly": True},
                        {"name": "data", "mountPath": "/mlp/out", "subPath": "builds/0123456789ab/out"},
                        {"name": "workspace", "mountPath": "/mlp/workspace", "readOnly": True},
                        {"name": "buildkitd", "mountPath": "/home/user/.local/share/buildkit"},
                        {"name": "docker-config", "mountPath": "/home/user/.docker", "readOnly": True},
                    ],
                }],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "mlp-data"}},
                    {"name": "workspace", "emptyDir": {}},
                    {"name": "buildkitd", "emptyDir": {}},
                    {"name": "docker-config", "secret": {
                        "secretName": "mlp-build-0123456789ab-push",
                        "items": [{"key": ".dockerconfigjson", "path": "config.json"}]}},
                ],
            },
        },
    },
}


def job(**overrides):
    kwargs = dict(build_id=BUILD_ID, namespace="ml", target="127.0.0.1:5000/mlplatform/models/iris:3", model="iris",
                  version="3", user="alice", settings=BuildKitSettings(), pvc="mlp-data",
                  build_sub_path=f"builds/{BUILD_ID}", push_secret=f"mlp-build-{BUILD_ID}-push",
                  http_registry=True, buildkitd_config=True)
    kwargs.update(overrides)
    return make_buildkit_job(**kwargs)


def test_buildkit_job_is_exactly_the_expected_manifest():
    assert job() == EXPECTED_JOB


def test_https_registry_without_credentials_and_admin_settings():
    settings = BuildKitSettings(image="registry.example/mirror/buildkit:v0.24.0-rootless", cpu=0.5, memory="1Gi",
                                timeout_seconds=600, ttl_seconds=0, image_pull_secrets=["mirror-pull"],
                                node_selector={"pool": "builds"}, labels={"team": "ml"},
                                annotations={"sidecar.istio.io/inject": "false"})
    made = job(settings=settings, push_secret=None, http_registry=False, buildkitd_config=False,
               target="registry.example/mlplatform/models/iris:3")
    spec = made["spec"]
    pod = spec["template"]["spec"]
    container = pod["containers"][0]
    assert (spec["activeDeadlineSeconds"], spec["ttlSecondsAfterFinished"]) == (600, 0)
    assert container["image"] == pod["initContainers"][0]["image"] == settings.image
    assert "--output" in container["args"]
    assert container["args"][container["args"].index("--output") + 1] == \
        "type=image,name=registry.example/mlplatform/models/iris:3,push=true"
    assert container["env"] == [{"name": "BUILDKITD_FLAGS", "value": "--oci-worker-no-process-sandbox"}]
    assert container["resources"]["limits"] == {"cpu": "500m", "memory": "1Gi", "ephemeral-storage": "20Gi"}
    assert [v["name"] for v in pod["volumes"]] == ["data", "workspace", "buildkitd"]
    assert pod["imagePullSecrets"] == [{"name": "mirror-pull"}]
    assert pod["nodeSelector"] == {"pool": "builds"}
    assert spec["template"]["metadata"]["labels"] == {"team": "ml", **LABELS}
    assert spec["template"]["metadata"]["annotations"] == {"sidecar.istio.io/inject": "false",
                                                          "mlplatform.io/user": "alice"}
    # the admin's labels cannot take over the platform's own
    hijack = job(settings=BuildKitSettings(labels={"mlplatform.io/build-id": "other"}))
    assert hijack["spec"]["template"]["metadata"]["labels"]["mlplatform.io/build-id"] == BUILD_ID


def test_nothing_privileged_and_no_secret_values_in_the_job():
    text = json.dumps(job())
    assert '"privileged": true' not in text and "hostPath" not in text and "hostPID" not in text
    assert "auth" not in text.replace("automountServiceAccountToken", "")


def test_push_secret_holds_only_the_target_registrys_entry(tmp_path):
    auth = tmp_path / "config.json"
    auth.write_text(json.dumps({"auths": {
        "https://reg.example:5000": {"auth": base64.b64encode(b"bob:s3cret").decode()},
        "other.example": {"username": "eve", "password": "x"},
    }}))
    config = docker_config_for(auth, "reg.example:5000")
    assert config == {"auths": {"reg.example:5000": {"auth": base64.b64encode(b"bob:s3cret").decode()}}}
    assert docker_config_for(auth, "nowhere.example") is None
    assert docker_config_for(None, "reg.example:5000") is None
    secret = make_push_secret("mlp-build-x-push", "ml", config, {"a": "b"})
    assert secret["type"] == "kubernetes.io/dockerconfigjson"
    assert json.loads(base64.b64decode(secret["data"][".dockerconfigjson"])) == config
    assert "s3cret" not in json.dumps(secret)  # base64 of the whole config, never in clear


def test_plain_http_registries_get_a_buildkitd_config():
    assert plain_http_hosts("127.0.0.1:55000", "127.0.0.1:55000/mlplatform/python:1") == ["127.0.0.1:55000"]
    assert plain_http_hosts("http://registry.internal:5000", "localhost:5001/base:1", "python:3.12") == [
        "registry.internal:5000", "localhost:5001"]
    assert plain_http_hosts("registry.example", "registry.example/base:1") == []
    assert buildkitd_toml(["127.0.0.1:55000"]) == '[registry."127.0.0.1:55000"]\n  http = true\n  insecure = true\n\n'


def test_job_outcome_and_failure_reasons():
    assert job_outcome({"status": {}}) is None
    assert job_outcome({"status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}}) is None
    assert job_outcome({"status": {"conditions": [{"type": "Complete", "status": "True"}]}})[0] == "Complete"
    failed = {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded"}
    assert job_outcome({"status": {"conditions": [failed]}}) == ("Failed", failed)
    pods = [{"metadata": {"name": "p1", "creationTimestamp": "2024-01-01T00:00:00Z"}, "status": {
        "phase": "Failed",
        "initContainerStatuses": [{"name": "unpack", "state": {"terminated": {"exitCode": 0}}}],
        "containerStatuses": [{"name": "buildkit", "state": {"terminated": {
            "exitCode": 1, "reason": "Error", "message": "RUN pip install: no matching distribution\n"}}}]}}]
    assert pod_failure(pods) == ("buildkit", "exit code 1, Error: RUN pip install: no matching distribution")
    assert pod_failure([]) == (None, None)
    pulling = [{"metadata": {"name": "p"}, "status": {"phase": "Pending", "initContainerStatuses": [
        {"name": "unpack", "image": "moby/buildkit:v0.24.0-rootless",
         "state": {"waiting": {"reason": "ImagePullBackOff", "message": "Back-off pulling image"}}}]}}]
    assert hopeless_reason(pulling) == ("container unpack (moby/buildkit:v0.24.0-rootless) is ImagePullBackOff: "
                                        "Back-off pulling image")
    assert hopeless_reason([{"status": {"containerStatuses": [{"state": {"waiting": {
        "reason": "ContainerCreating"}}}]}}]) is None


def test_platform_config_builders_section():
    base = {"environments": [{"name": "py", "image": "r.example/py:1"}],
            "hardware": [{"name": "s", "cpu": 1, "memory": "1Gi"}]}
    assert parse_config(base).builders.buildkit == BuildKitSettings()
    custom = parse_config({**base, "builders": {"buildkit": {"image": "r.example/buildkit:rootless",
                                                             "memory": "8Gi"}}})
    assert custom.builders.buildkit.image == "r.example/buildkit:rootless"
    with pytest.raises(ConfigError, match=r"builders\.buildkit\.memory: not a memory quantity"):
        parse_config({**base, "builders": {"buildkit": {"memory": "8 GB"}}})
    with pytest.raises(ConfigError, match=r"builders\.buildkit\.privileged: unknown key"):
        parse_config({**base, "builders": {"buildkit": {"privileged": True}}})
    assert "buildkit" in BUILDERS
