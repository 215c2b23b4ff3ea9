"""The `buildkit` builder's Job, run for real: its pod spec (from ``make_buildkit_job``) runs in
Podman through the kubelet stand-in (tests/kubelet_standin.py: the test control plane's kwok nodes
run no containers), with the rootless BuildKit image that scripts/build-images.sh builds
(MLP_TEST_IMAGE_BUILDKIT) and the test registries of scripts/registry.sh.

- the context the platform writes (``context.tar``, ``buildkitd.toml``) builds: the init container
  unpacks it, BuildKit (uid 1000, not privileged, only the manifest's two relaxations) runs the
  generated Dockerfile's ``pip install -r requirements.txt`` for real (a wheel shipped in the
  context) and pushes with the docker-config Secret; the platform's post-build check
  (``pushed_image``) accepts the digest from ``out/metadata.json``; skopeo sees the labels; the
  image runs with the requirement installed;
- a requirement pip cannot install fails the build container and pushes nothing;
- the relaxations builders/buildkit.py documents are needed: with the runtime's default seccomp
  profile (Podman's lets RootlessKit start, but runc cannot ``sethostname`` for the RUN step) or with
  ``allowPrivilegeEscalation: false`` (newuidmap gets no capability) the build fails. AppArmor is
  not enabled on this machine's kernel: ``appArmorProfile`` is mapped but cannot matter here.

Each build pod pulls and unpacks the 1.4 GB base into a fresh emptyDir, as on Kubernetes: ≈ 1.5 min
per build here (docs/rig.md).

Needs MLP_TEST_IMAGE_BUILDKIT and MLP_TEST_DOCKER_HOST (set by `make test`); fails, never skips.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import io
import json
import subprocess
import uuid
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlplatform_server.builders.buildkit import (
    BUILDS_DIR, CONTAINER, INIT_CONTAINER, METADATA, BuildKitBuildError,
    build_job_name, build_labels, docker_config_for, make_buildkit_job, make_push_secret, pushed_image,
    write_build_dir)
from mlplatform_server.builders.context import BuildContext, make_context
from mlplatform_server.builders.registry import ImageNotInRegistry, ImageRef, RegistryClient
from mlplatform_server.config import BuildKitSettings

from kubelet_standin import PodRun, Unmapped, run_pod
from support import private_podman, registry_env, required_env

pytestmark = pytest.mark.docker
PVC = "mlp-data"
PROBE = "mlp_bk_probe"
PROBE_WHEEL = f"{PROBE}-1.0-py3-none-any.whl"


@pytest.fixture(scope="module")
def registries() -> dict[str, str]:
    return registry_env()


@pytest.fixture(scope="module")
def buildkit_image() -> str:
    return required_env("MLP_TEST_IMAGE_BUILDKIT")


@pytest.fixture(scope="module")
def pod_engine():
    """A Podman API service of our own: it reads the plain-HTTP registries' drop-in when it starts,
    so it can also pull what BuildKit pushed."""
    import docker

    required_env("MLP_TEST_DOCKER_HOST")
    with private_podman("mlpbk") as url:
        client = docker.DockerClient(base_url=url, timeout=900)
        yield client
        client.close()


# -- the context -------------------------------------------------------------------------------------


def wheel(name: str, version: str, files: dict[str, bytes]) -> bytes:
    """A minimal pure-Python wheel (METADATA, WHEEL, RECORD with hashes), built here: no index needed."""
    info = f"{name}-{version}.dist-info"
    files = {**files,
             f"{info}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n".encode(),
             f"{info}/WHEEL": b"Wheel-Version: 1.0\nGenerator: mlplatform-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{info}/RECORD,,")
    files[f"{info}/RECORD"] = ("\n".join(record) + "\n").encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for path, data in files.items():
            zf.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return buf.getvalue()


def project(tmp_path: Path, wheel_name: str, wheel_bytes: bytes) -> Path:
    """A notebook's folder with a wheel and a requirements.txt naming it (the RUN step runs pip in
    the base image's WORKDIR, /mlp, so ./code/ is the shipped folder): pip installs offline."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "helpers.py").write_text("def helper():\n    return 42\n")
    (folder / wheel_name).write_bytes(wheel_bytes)
    (folder / "requirements.txt").write_text(f"./code/{wheel_name}\n")
    return folder


def context(base: str, folder: Path) -> BuildContext:
    ctx = make_context(model="iris", version="1", content_hash="sha256:" + "b" * 64,
                       module_source="import helpers\nVALUE = helpers.helper()\n", env_image=base,
                       notebook_name="iris.ipynb", notebook_bytes=b'{"cells": []}', folder=folder,
                       git_commit="0123abc", created="2026-01-02T03:04:05Z")
    assert ctx.has_requirements and "pip install" in ctx.dockerfile()
    return ctx


# -- what build_buildkit hands its Job ---------------------------------------------------------------


@dataclass
class Staged:
    job: dict[str, Any]
    secrets: list[dict[str, Any]]
    out_dir: Path
    target: ImageRef

    @property
    def pod_spec(self) -> dict[str, Any]:
        return self.job["spec"]["template"]["spec"]

    @property
    def name(self) -> str:
        return self.job["metadata"]["name"]


def stage(ctx: BuildContext, claim: Path, target: ImageRef, registry_url: str, auth_file: str | None,
          image: str) -> Staged:
    """The build directory on the claim, the push Secret and the Job, as build_buildkit makes them."""
    build_id = uuid.uuid4().hex[:12]
    name = build_job_name(build_id)
    build_dir = claim / BUILDS_DIR / build_id
    out_dir = build_dir / "out"
    http_hosts = write_build_dir(ctx, build_dir, registry_url)
    docker_config = docker_config_for(auth_file, target.registry)
    labels = build_labels(build_id, ctx.model, ctx.version, "alice")
    secrets = [make_push_secret(f"{name}-push", "mlp", docker_config, labels)] if docker_config else []
    job = make_buildkit_job(
        build_id=build_id, namespace="mlp", target=f"{target.registry}/{target.repository}:{target.tag}",
        model=ctx.model, version=ctx.version, user="alice", settings=BuildKitSettings(image=image), pvc=PVC,
        build_sub_path=f"{BUILDS_DIR}/{build_id}", push_secret=secrets[0]["metadata"]["name"] if secrets else None,
        http_registry=target.registry in http_hosts, buildkitd_config=bool(http_hosts))
    return Staged(job, secrets, out_dir, target)


def run_job(engine: Any, staged: Staged, claim: Path, pod_spec: dict[str, Any] | None = None) -> PodRun:
    return run_pod(engine, pod_spec or staged.pod_spec, claims={PVC: claim}, secrets=staged.secrets, timeout=900)


def unique_repo() -> str:
    return f"mlptest/bk-{uuid.uuid4().hex[:10]}"


def skopeo_inspect(ref: str, creds: str | None = None) -> dict[str, Any]:
    args = ["skopeo", "inspect", "--tls-verify=false", *(["--creds", creds] if creds else []), f"docker://{ref}"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def user_password(auth_file: str, registry: str) -> tuple[str, str]:
    user, _, password = base64.b64decode(json.loads(Path(auth_file).read_text())["auths"][registry]["auth"]) \
        .decode().partition(":")
    return user, password


def assert_not_in_registry(registry: str, target: ImageRef, auth_file: str | None = None) -> None:
    with RegistryClient(registry, auth_file) as client, pytest.raises(ImageNotInRegistry):
        client.get_manifest(target.repository, target.tag)


# -- the tests -------------------------------------------------------------------------------------


def test_job_pod_builds_with_pip_and_pushes_rootless(registries, pod_engine, buildkit_image, tmp_path):
    reg, auth_file = registries["MLP_TEST_REGISTRY_AUTH"], registries["MLP_TEST_REGISTRY_AUTH_FILE"]
    base = registries["MLP_TEST_BASE_REF"].replace(registries["MLP_TEST_REGISTRY"], reg)
    probe = wheel(PROBE, "1.0", {f"{PROBE}/__init__.py": b"VALUE = 'installed by pip inside BuildKit'\n"})
    ctx = context(base, project(tmp_path, PROBE_WHEEL, probe))
    claim = tmp_path / "claim"
    staged = stage(ctx, claim, ImageRef(reg, unique_repo(), "1"), reg, auth_file, buildkit_image)
    assert staged.secrets, "the auth registry's credentials go in a push Secret"

    run = run_job(pod_engine, staged, claim)
    unpack, build = run.get(INIT_CONTAINER), run.get(CONTAINER)
    assert unpack.exit_code == 0, unpack.logs
    assert build.exit_code == 0, build.logs[-6000:]
    print(f"\nbuildkit container: {build.seconds:.1f}s")
    # what the engine ran: uid 1000 with the manifest's image and command, not privileged
    config, host = build.attrs["Config"], build.attrs["HostConfig"]
    assert buildkit_image in config["Image"], config["Image"]
    assert config["User"] == "1000:1000" and host["Privileged"] is False and not host.get("CapAdd")
    assert config["Entrypoint"][0] == "buildctl-daemonless.sh"
    assert unpack.attrs["HostConfig"]["ReadonlyRootfs"] is True and unpack.attrs["HostConfig"]["CapDrop"]
    assert "pip install" in build.logs and f"Successfully installed {PROBE.replace('_', '-')}-1.0" in build.logs

    digest = json.loads((staged.out_dir / METADATA).read_text())["containerimage.digest"]
    assert digest.startswith("sha256:")
    image = pushed_image(staged.out_dir, staged.target, reg, auth_file, staged.name)
    assert image == f"{reg}/{staged.target.repository}@{digest}"

    user, password = user_password(auth_file, reg)
    info = skopeo_inspect(image, creds=f"{user}:{password}")
    for key, value in ctx.labels.items():
        assert info["Labels"].get(key) == value, key
    assert info["Digest"] == digest

    pod_engine.images.pull(f"{reg}/{staged.target.repository}", tag="1",
                           auth_config={"username": user, "password": password})
    out = pod_engine.containers.run(
        f"{reg}/{staged.target.repository}:1", ["python3", "-c",
        f"import {PROBE}, runpy, os, importlib.metadata as md; print({PROBE}.VALUE, md.version('{PROBE.replace('_', '-')}'), "
        "runpy.run_path(os.environ['MLP_MODULE_PATH'])['VALUE'])"], remove=True, working_dir="/mlp/code")
    assert out.decode().strip() == "installed by pip inside BuildKit 1.0 42"


def test_uninstallable_requirement_fails_the_pod_and_pushes_nothing(registries, pod_engine, buildkit_image,
                                                                     tmp_path):
    reg, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    ctx = context(base, project(tmp_path, "mlp_broken-1.0-py3-none-any.whl", b"not a zip archive"))
    claim = tmp_path / "claim"
    staged = stage(ctx, claim, ImageRef(reg, unique_repo(), "1"), reg, None, buildkit_image)
    assert not staged.secrets

    run = run_job(pod_engine, staged, claim)
    assert run.get(INIT_CONTAINER).exit_code == 0
    build = run.get(CONTAINER)
    assert build.exit_code != 0, build.logs[-4000:]
    assert "pip install" in build.logs and "mlp_broken" in build.logs, build.logs[-4000:]
    assert not (staged.out_dir / METADATA).exists()
    with pytest.raises(BuildKitBuildError, match="pushed no image"):
        pushed_image(staged.out_dir, staged.target, reg, None, staged.name)
    assert_not_in_registry(reg, staged.target)


def relaxed_without(pod_spec: dict[str, Any], **security: Any) -> dict[str, Any]:
    """The pod spec with the build container's security context changed."""
    spec = copy.deepcopy(pod_spec)
    container = next(c for c in spec["containers"] if c["name"] == CONTAINER)
    container["securityContext"].update(security)
    return spec


@pytest.mark.parametrize("security, why", [
    # Podman's default profile lets RootlessKit and buildkitd start; runc's sethostname for the RUN fails
    ({"seccompProfile": {"type": "RuntimeDefault"}}, "sethostname: operation not permitted"),
    # no_new_privs: newuidmap's file capability is not granted
    ({"allowPrivilegeEscalation": False}, "newuidmap: write to uid_map failed: operation not permitted"),
], ids=["default-seccomp", "no-privilege-escalation"])
def test_each_relaxation_is_needed(registries, pod_engine, buildkit_image, tmp_path, security, why):
    reg, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    probe = wheel(PROBE, "1.0", {f"{PROBE}/__init__.py": b"VALUE = 1\n"})
    ctx = context(base, project(tmp_path, PROBE_WHEEL, probe))
    claim = tmp_path / "claim"
    staged = stage(ctx, claim, ImageRef(reg, unique_repo(), "1"), reg, None, buildkit_image)

    run = run_job(pod_engine, staged, claim, relaxed_without(staged.pod_spec, **security))
    build = run.get(CONTAINER)
    assert build.exit_code != 0, build.logs[-4000:]
    assert why in build.logs.lower(), build.logs[-4000:]
    assert not (staged.out_dir / METADATA).exists()
    assert_not_in_registry(reg, staged.target)


@pytest.mark.parametrize("change", [
    lambda spec: spec.update(hostUsers=False),
    lambda spec: spec.update(automountServiceAccountToken=True),
    lambda spec: spec["containers"][0]["securityContext"].update(procMount="Unmasked"),
    lambda spec: spec["containers"][0]["securityContext"].update(seccompProfile={"type": "Localhost"}),
    lambda spec: spec["initContainers"][0]["volumeMounts"][0].update(mountPropagation="Bidirectional"),
    lambda spec: spec["containers"][0]["env"].append({"name": "X", "valueFrom": {"fieldRef": {}}}),
    lambda spec: spec["volumes"].append({"name": "h", "hostPath": {"path": "/"}}),
], ids=["hostUsers", "sa-token", "procMount", "localhost-seccomp", "mountPropagation", "valueFrom", "hostPath"])
def test_the_stand_in_refuses_what_it_does_not_map(tmp_path, change):
    """A field the stand-in would silently ignore is a test that proves nothing: it fails first."""
    job = make_buildkit_job(
        build_id="0123456789ab", namespace="mlp", target="127.0.0.1:5000/m/iris:1", model="iris", version="1",
        user="alice", settings=BuildKitSettings(image="localhost/none"), pvc=PVC, build_sub_path="builds/x",
        push_secret=None, http_registry=True, buildkitd_config=True)
    spec = job["spec"]["template"]["spec"]
    change(spec)
    with pytest.raises(Unmapped):
        run_pod(None, spec, claims={PVC: tmp_path}, secrets=[])
