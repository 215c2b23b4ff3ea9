"""The `buildkit` builder against the real control plane of scripts/kube-up.sh and the real local
registries of scripts/registry.sh.

- its Job is accepted by the API server (`kubectl apply --dry-run=server`), and the Pod Security
  `baseline` level objects to exactly the two documented relaxations (seccomp and AppArmor
  `Unconfined`), nothing else (no privileged, no host namespaces, no added capabilities);
- through `mlp server --backend kubernetes` and the `mlp` CLI: kwok completes the build pod
  without running BuildKit, so nothing is pushed: the build ends with "the build Job finished but
  pushed no image", even though the tag already holds an older image, and the version keeps what
  it had. The pod kwok ran runs as uid 1000, non-root, not privileged, without an API token, and
  the registry password is nowhere in the Job or pod; the push Secret is gone afterwards;
- a build pod made to fail (kwok's failure label, set through builders.buildkit.labels) gives the
  pod's exit code, reason and message, and records nothing.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import base64
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from kubetest import PVC, get_json, kubeconfig, kubectl, namespace_with_claim
from support import registry_env, save_with_requirements

from mlplatform_server.builders.buildkit import make_buildkit_job
from mlplatform_server.config import BuildKitSettings

KWOK_FAIL = "pod-container-running-failed.stage.kwok.x-k8s.io"


@pytest.fixture(scope="module")
def registries() -> dict[str, str]:
    return registry_env()


@pytest.fixture
def namespace() -> Any:
    with namespace_with_claim("mlp-bk") as ns:
        yield ns


def test_job_is_accepted_by_the_api_server_and_baseline_objects_only_to_the_two_profiles(namespace):
    job = make_buildkit_job(
        build_id="0123456789ab", namespace=namespace, target="registry.example/mlplatform/models/iris:1",
        model="iris", version="1", user="alice", settings=BuildKitSettings(), pvc=PVC,
        build_sub_path="builds/0123456789ab", push_secret="mlp-build-0123456789ab-push", http_registry=False,
        buildkitd_config=False)
    accepted = kubectl("apply", "--dry-run=server", "-o", "json", "-f", "-", input=json.dumps(job))
    echoed = json.loads(accepted.stdout)
    assert echoed["metadata"]["name"] == "mlp-build-0123456789ab"
    container = echoed["spec"]["template"]["spec"]["containers"][0]
    assert container["securityContext"]["appArmorProfile"] == {"type": "Unconfined"}  # a field the server knows
    assert "Warning" not in accepted.stderr, accepted.stderr

    # What Pod Security "baseline" says about its pods: exactly the two documented relaxations.
    kubectl("label", "namespace", namespace, "pod-security.kubernetes.io/warn=baseline")
    warned = kubectl("apply", "--dry-run=server", "-f", "-", input=json.dumps(job)).stderr
    assert 'would violate PodSecurity "baseline:latest"' in warned, warned
    violations = warned.split('"baseline:latest": ', 1)[1].strip()
    assert violations == (
        'forbidden AppArmor profile (container "buildkit" must not set AppArmor profile type to "Unconfined"), '
        'seccompProfile (container "buildkit" must not set securityContext.seccompProfile.type to "Unconfined")')


def build_server(factory, tmp_path: Path, namespace: str, registries: dict[str, str],
                 buildkit: dict[str, Any] | None = None):
    registry = registries["MLP_TEST_REGISTRY_AUTH"]
    base = registries["MLP_TEST_BASE_REF"].replace(registries["MLP_TEST_REGISTRY"], registry)
    config = tmp_path / "platform.yaml"
    config.write_text(yaml.safe_dump({
        "environments": [{"name": "python", "image": base, "default": True}],
        "hardware": [{"name": "cpu-small", "cpu": 1, "memory": "1Gi", "default": True}],
        "builders": {"buildkit": {"timeout_seconds": 120, **(buildkit or {})}},
    }))
    return factory(backend="kubernetes", config=config,
                   extra_args=["--namespace", namespace, "--kubeconfig", kubeconfig(), "--pvc", PVC],
                   extra_env={"MLP_REGISTRY": registry,
                              "MLP_REGISTRY_AUTH": registries["MLP_TEST_REGISTRY_AUTH_FILE"]})


def version_image(server) -> str | None:
    with server.api() as api:
        return api.get("/models/iris/versions/1").json()["image"]


def assert_clean_failure(proc, *fragments: str) -> str:
    assert proc.returncode != 0, proc.stdout
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr
    return proc.stderr


def build_jobs(ns: str) -> list[dict[str, Any]]:
    return get_json(ns, "jobs", "-l", "app.kubernetes.io/component=build")["items"]


def test_kwok_build_pushes_no_image_and_records_nothing(mlp_server_factory, namespace, registries, tmp_path):
    server = build_server(mlp_server_factory, tmp_path, namespace, registries)
    folder = save_with_requirements(server, tmp_path)

    # What `auto` would pick on Kubernetes when there is something to install.
    with server.api() as api:
        shown = api.get("/models/iris/versions/1/build", params={"context_dir": str(folder)}).json()
    assert shown["builder"] == "buildkit" and "pip install" in shown["dockerfile"]

    # The tag already holds an image (the layer builder, without the requirements): a build Job that
    # pushes nothing must not pass that old image off as its own.
    older = server.mlp_json("build", "iris", "--builder", "layer")["image"]
    assert version_image(server) == older

    started = time.monotonic()
    proc = server.mlp("build", "iris", "--builder", "buildkit", "--context", str(folder), check=False)
    message = assert_clean_failure(proc, "The build Job finished but pushed no image",
                                   "nothing was recorded")
    assert time.monotonic() - started < 60, message
    print(message)
    assert version_image(server) == older
    with server.api() as api:
        r = api.post("/models/iris/versions/1/build", json={"builder": "buildkit", "context_dir": str(folder)})
        assert r.status_code == 502 and r.json()["error"] == "build_failed", r.text
        assert "pushed no image" in r.json()["message"]
    assert version_image(server) == older

    # The pods kwok ran: non-root uid 1000, not privileged, no API token, credentials only by reference.
    jobs = build_jobs(namespace)
    assert len(jobs) == 2
    password = json.loads(Path(registries["MLP_TEST_REGISTRY_AUTH_FILE"]).read_text())
    secret_texts = [base64.b64decode(e["auth"]).decode().split(":", 1)[1] for e in password["auths"].values()]
    for job in jobs:
        name = job["metadata"]["name"]
        assert job["status"].get("succeeded") == 1
        [pod] = get_json(namespace, "pods", "-l", f"batch.kubernetes.io/job-name={name}")["items"]
        spec = pod["spec"]
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 1000
        assert spec["automountServiceAccountToken"] is False
        assert not [v for v in spec["volumes"] if v["name"].startswith("kube-api-access")]
        for container in spec["initContainers"] + spec["containers"]:
            context = container.get("securityContext") or {}
            assert context.get("privileged") is not True
            assert context.get("runAsUser", 1000) == 1000
            assert not [m for m in container["volumeMounts"] if m["mountPath"].startswith("/var/run/secrets")]
        buildkit = spec["containers"][0]
        assert buildkit["securityContext"]["runAsNonRoot"] is True
        secret_volume = next(v for v in spec["volumes"] if v["name"] == "docker-config")
        assert secret_volume["secret"]["secretName"] == f"{name}-push"
        assert {"name": "DOCKER_CONFIG", "value": "/home/user/.docker"} in buildkit["env"]
        text = json.dumps(job) + json.dumps(pod)
        assert not [s for s in secret_texts if s in text]
        assert "registry.insecure=true" in " ".join(buildkit["args"])  # the test registry speaks HTTP
    # The push Secrets went with the builds; the build directories too.
    assert not get_json(namespace, "secrets", "-l", "app.kubernetes.io/component=build")["items"]
    assert not list((tmp_path / "data" / "builds").iterdir())

    # A build can be asked for only where it can run: wrong builder names still answer 400.
    with server.api() as api:
        r = api.post("/models/iris/versions/1/build", json={"builder": "kaniko"})
        assert r.status_code == 400 and "buildkit" in r.json()["message"]


def test_failed_build_pod_gives_its_reason_and_records_nothing(mlp_server_factory, namespace, registries,
                                                             tmp_path):
    server = build_server(mlp_server_factory, tmp_path, namespace, registries, buildkit={
        "labels": {KWOK_FAIL: "true"},
        "annotations": {f"{KWOK_FAIL}/exit-code": "1", f"{KWOK_FAIL}/reason": "Error",
                        # (kwok writes it into YAML unquoted: no ": " in it)
                        f"{KWOK_FAIL}/message": "No matching distribution found for tabulate==0.9.0",
                        f"{KWOK_FAIL}/container-name": "buildkit"},
    })
    folder = save_with_requirements(server, tmp_path)
    proc = server.mlp("build", "iris", "--context", str(folder), "--json", check=False)  # auto → buildkit
    print(proc.stderr)
    assert_clean_failure(proc, "The buildkit build Job mlp-build-", "failed (BackoffLimitExceeded",
                         "container buildkit exit code 1, Error: No matching distribution found for "
                         "tabulate==0.9.0")
    assert version_image(server) is None
    [job] = build_jobs(namespace)
    assert job["status"].get("failed") == 1
    assert not get_json(namespace, "secrets", "-l", "app.kubernetes.io/component=build")["items"]


def test_the_pushed_digest_is_taken_from_buildctls_metadata_and_checked_in_the_registry(registries, tmp_path):
    """What a real BuildKit run leaves behind (kwok runs none): buildctl's metadata file names the
    pushed manifest; the registry must have it."""
    from mlplatform_server.builders.buildkit import BuildKitBuildError, pushed_image
    from mlplatform_server.builders.registry import ImageRef, RegistryClient

    registry, auth_file = registries["MLP_TEST_REGISTRY_AUTH"], registries["MLP_TEST_REGISTRY_AUTH_FILE"]
    base = ImageRef.parse(registries["MLP_TEST_BASE_REF"].replace(registries["MLP_TEST_REGISTRY"], registry))
    with RegistryClient(registry, auth_file) as client:
        _, _, digest = client.get_manifest(base.repository, base.reference)
    target = ImageRef(registry, base.repository, tag="built")
    (tmp_path / "metadata.json").write_text(json.dumps({"containerimage.digest": digest, "image.name": "x"}))
    image = pushed_image(tmp_path, target, registry, auth_file, "mlp-build-x")
    assert image == f"{registry}/{base.repository}@{digest}"

    missing = "sha256:" + "0" * 64
    (tmp_path / "metadata.json").write_text(json.dumps({"containerimage.digest": missing}))
    with pytest.raises(BuildKitBuildError, match=f"finished but pushed no image: mlp-build-x reports {missing}"):
        pushed_image(tmp_path, target, registry, auth_file, "mlp-build-x")
    (tmp_path / "metadata.json").write_text("{}")
    with pytest.raises(BuildKitBuildError, match="names no image digest"):
        pushed_image(tmp_path, target, registry, auth_file, "mlp-build-x")
