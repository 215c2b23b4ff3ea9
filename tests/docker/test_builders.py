"""The builders against real registries (Debian's docker-registry on loopback, plain and htpasswd)
and a real Podman engine: `skopeo inspect` reads what the layer builder pushed, the same version
gives the same digest, Podman runs the image, auth and unreachable registries fail clearly.

scripts/registry.sh (run here, idempotent) starts the registries and pushes MLP_TEST_IMAGE into
them. The engine tests use a private `podman system service` started here: the test registries
speak plain HTTP, which Podman learns from a registries.conf drop-in that registry.sh writes and a
service reads only when it starts.
"""

from __future__ import annotations

import json
import random
import subprocess
import uuid
from pathlib import Path

import pytest

from mlplatform_server.builders.context import deterministic_tar, make_context, sha256_digest
from mlplatform_server.builders.engine import EngineBuildError, build_engine
from mlplatform_server.builders.layer import build_layer
from mlplatform_server.builders.registry import (
    DOCKER_MANIFEST, OCI_INDEX, OCI_MANIFEST, ImageNotInRegistry, ImageRef, RegistryAuthError, RegistryClient,
    RegistryUnreachable)

from support import private_podman, registry_env  # noqa: E402

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def registries() -> dict[str, str]:
    return registry_env()


@pytest.fixture(scope="session")
def private_engine():
    """A Podman API service of our own (it reads the registries.conf drop-in when it starts)."""
    import docker

    with private_podman("mlpb") as url:
        client = docker.DockerClient(base_url=url, timeout=600)
        yield url, client
        client.close()


def skopeo_inspect(ref: str, *extra: str, creds: str | None = None) -> dict:
    args = ["skopeo", "inspect", "--tls-verify=false", *extra]
    if creds:
        args += ["--creds", creds]
    out = subprocess.run(args + [f"docker://{ref}"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def ctx_for(base: str, tmp_path: Path, model: str = "iris", version: str = "1", payload: int = 200_000, **kw):
    folder = tmp_path / "nb"
    folder.mkdir(exist_ok=True)
    (folder / "helpers.py").write_text("def helper():\n    return 42\n")
    (folder / "vocab.bin").write_bytes(random.Random(payload).randbytes(payload))  # incompressible, fixed
    (folder / "scratch.tmp").write_text("not shipped")
    (folder / ".mlpignore").write_text("*.tmp\n")
    return make_context(model=model, version=version, content_hash="sha256:" + "a" * 64,
                        module_source="import helpers\nVALUE = helpers.helper()\n", env_image=base,
                        notebook_name=f"{model}.ipynb", notebook_bytes=b'{"cells": []}', folder=folder,
                        git_commit="0123abc", created="2026-01-02T03:04:05Z", **kw)


def unique_repo() -> str:
    return f"mlptest/{uuid.uuid4().hex[:10]}"


def test_layer_build_is_read_by_skopeo_and_podman_runs_it(registries, private_engine, tmp_path):
    reg, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    ctx = ctx_for(base, tmp_path)
    target = ImageRef(reg, unique_repo(), "1")
    result = build_layer(ctx, target, reg)
    assert result.image.startswith(f"{reg}/{target.repository}@sha256:")
    base_info = skopeo_inspect(base)
    assert result.blobs_mounted == len(base_info["Layers"]) and result.blobs_copied == 0
    # bytes sent: the code layer, the config and the manifest — never the base
    assert result.bytes_uploaded <= 1.1 * result.layer_size, result.to_json()
    assert result.seconds < 5

    info = skopeo_inspect(result.image)
    assert info["Layers"][:-1] == base_info["Layers"] and info["Layers"][-1] == ctx.code_layer().digest
    assert info["Labels"]["org.opencontainers.image.title"] == "iris"
    assert info["Labels"]["org.opencontainers.image.version"] == "1"
    assert info["Labels"]["org.opencontainers.image.revision"] == "0123abc"
    # the base is named in the OCI manifest's annotations (as buildah does), not again in the config
    raw = skopeo_inspect(result.image, "--raw")
    assert raw["annotations"]["org.opencontainers.image.base.digest"] == result.base_digest
    assert raw["annotations"]["org.opencontainers.image.base.name"] == base
    assert "org.opencontainers.image.base.digest" not in info["Labels"]
    assert "MLP_MODULE_PATH=/mlp/code/model.py" in info["Env"]
    config = skopeo_inspect(result.image, "--config")
    assert len(config["rootfs"]["diff_ids"]) == len(info["Layers"])
    assert config["config"]["WorkingDir"] == "/mlp"
    # the default compact history: an entry per layer, the base's commands stay on the base
    assert [set(h) for h in config["history"]] == [{"created"}] * (len(info["Layers"]) - 1) + [{"created", "created_by"}]

    _, engine = private_engine
    out = engine.containers.run(result.image, ["python3", "-c",
                                "import os, runpy; print(sorted(os.listdir('/mlp/code')), "
                                "runpy.run_path(os.environ['MLP_MODULE_PATH'])['VALUE'])"],
                                remove=True, working_dir="/mlp/code")
    assert out.decode().strip() == "['.mlpignore', 'helpers.py', 'iris.ipynb', 'model.py', 'vocab.bin'] 42"


def test_a_model_image_is_a_base_podman_builds_on_with_either_history(registries, private_engine, tmp_path):
    """Podman builds FROM a model image (a Dockerfile of several steps) with the compact history
    and with the full one: each lists one entry per layer. (With no history at all Podman 4.3
    fails the second step: "history lists 1 non-empty layers, but we have 6 layers on disk".)"""
    docker_host, engine = private_engine
    reg, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    base_config = skopeo_inspect(base, "--config")
    for history in ("compact", "full"):
        model = build_layer(ctx_for(base, tmp_path, payload=0), ImageRef(reg, unique_repo(), "1"), reg, history=history)
        config = skopeo_inspect(model.image, "--config")
        non_empty = [h for h in config["history"] if not h.get("empty_layer")]
        assert len(non_empty) == len(config["rootfs"]["diff_ids"]), history
        if history == "full":
            assert config["history"][:-1] == base_config["history"]
            assert config["history"][-1]["created_by"].startswith("mlplatform layer builder: COPY code/")
        on_top = ctx_for(model.image, tmp_path, model="derived", payload=0)
        built = build_engine(on_top, ImageRef(reg, unique_repo(), "1"), reg, docker_host=docker_host)
        out = engine.containers.run(built.image, ["python3", "-c", "import os; print(os.environ['MLP_MODULE_PATH'])"],
                                    remove=True)
        assert out.decode().strip() == "/mlp/code/model.py", history
        assert len(engine.images.get(built.image).history()) >= len(non_empty) + 2, history


def test_same_version_twice_gives_the_same_digest(registries, tmp_path):
    reg, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    target = ImageRef(reg, unique_repo(), "1")
    first = build_layer(ctx_for(base, tmp_path), target, reg)
    second = build_layer(ctx_for(base, tmp_path), target, reg)
    assert first.image == second.image
    assert second.bytes_uploaded < 2000  # only the manifest again: every blob is there
    other = build_layer(ctx_for(base, tmp_path, version="2"), ImageRef(reg, target.repository, "2"), reg)
    assert other.image != first.image


def test_auth_registry_right_and_wrong_credentials(registries, tmp_path):
    reg = registries["MLP_TEST_REGISTRY_AUTH"]
    base = registries["MLP_TEST_BASE_REF"].replace(registries["MLP_TEST_REGISTRY"], reg)
    auth_file = registries["MLP_TEST_REGISTRY_AUTH_FILE"]
    ctx = ctx_for(base, tmp_path, payload=0)
    target = ImageRef(reg, unique_repo(), "1")

    result = build_layer(ctx, target, reg, auth_file)
    user_password = json.loads(Path(auth_file).read_text())["auths"][reg]["auth"]
    import base64
    creds = base64.b64decode(user_password).decode()
    assert skopeo_inspect(result.image, creds=creds)["Labels"]["org.opencontainers.image.title"] == "iris"

    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"auths": {reg: {"auth": base64.b64encode(b"mlp:wrong").decode()}}}))
    with pytest.raises(RegistryAuthError, match=r"refused the credentials for 127\.0\.0\.1:\d+ in .*wrong\.json"):
        build_layer(ctx, ImageRef(reg, unique_repo(), "1"), reg, wrong)
    with pytest.raises(RegistryAuthError, match="needs credentials"):
        build_layer(ctx, ImageRef(reg, unique_repo(), "1"), reg, None)


def test_unreachable_registry_and_missing_base(registries, tmp_path):
    from support import free_port

    dead = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryUnreachable, match=f"Cannot reach the registry at http://{dead}"):
        build_layer(ctx_for(f"{dead}/mlplatform/python:x", tmp_path, payload=0), ImageRef(dead, "m/x", "1"), dead)
    reg = registries["MLP_TEST_REGISTRY"]
    with pytest.raises(ImageNotInRegistry, match="is not in the registry"):
        build_layer(ctx_for(f"{reg}/mlplatform/no-such-image:x", tmp_path, payload=0),
                    ImageRef(reg, unique_repo(), "1"), reg)


def _push_tiny_base(client: RegistryClient, repo: str, media_type: str, tag: str = "tiny", arch: str = "amd64") -> str:
    """A one-layer image (busybox-free: just a file) in `media_type`'s format; returns its manifest digest."""
    import gzip

    tar = deterministic_tar({"etc/tiny": arch.encode()})
    layer = gzip.compress(tar, mtime=0)
    if media_type == DOCKER_MANIFEST:
        layer_type, config_type = "application/vnd.docker.image.rootfs.diff.tar.gzip", "application/vnd.docker.container.image.v1+json"
    else:
        layer_type, config_type = "application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.oci.image.config.v1+json"
    config = json.dumps({"architecture": arch, "os": "linux", "config": {"Env": ["PATH=/bin"]},
                         "rootfs": {"type": "layers", "diff_ids": [sha256_digest(tar)]},
                         "history": [{"created_by": "tiny"}]}).encode()
    client.upload_blob(repo, layer, sha256_digest(layer))
    client.upload_blob(repo, config, sha256_digest(config))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": media_type,
                           "config": {"mediaType": config_type, "digest": sha256_digest(config), "size": len(config)},
                           "layers": [{"mediaType": layer_type, "digest": sha256_digest(layer), "size": len(layer)}]}).encode()
    return client.put_manifest(repo, tag, manifest, media_type)


def test_docker_schema2_base_and_an_oci_index(registries, tmp_path):
    reg = registries["MLP_TEST_REGISTRY"]
    with RegistryClient(reg) as client:
        docker_repo, index_repo = unique_repo(), unique_repo()
        _push_tiny_base(client, docker_repo, DOCKER_MANIFEST)
        amd64 = _push_tiny_base(client, index_repo, OCI_MANIFEST)
        arm64 = _push_tiny_base(client, index_repo, OCI_MANIFEST, tag="arm", arch="arm64")
        index = json.dumps({"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": [
            {"mediaType": OCI_MANIFEST, "digest": arm64, "size": 1,
             "platform": {"os": "linux", "architecture": "arm64"}},
            {"mediaType": OCI_MANIFEST, "digest": amd64, "size": 1, "platform": {"os": "linux", "architecture": "amd64"}},
        ]}).encode()
        client.put_manifest(index_repo, "multi", index, OCI_INDEX)

    result = build_layer(ctx_for(f"{reg}/{docker_repo}:tiny", tmp_path, payload=0), ImageRef(reg, unique_repo(), "1"), reg)
    raw = skopeo_inspect(result.image, "--raw")
    assert raw["mediaType"] == DOCKER_MANIFEST and len(raw["layers"]) == 2
    assert raw["layers"][1]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"
    # no annotations in a Docker manifest: the base is named in the config's labels
    labels = skopeo_inspect(result.image)["Labels"]
    assert labels["org.opencontainers.image.base.digest"] == result.base_digest
    assert labels["org.opencontainers.image.base.name"] == f"{reg}/{docker_repo}:tiny"

    result = build_layer(ctx_for(f"{reg}/{index_repo}:multi", tmp_path, payload=0), ImageRef(reg, unique_repo(), "1"), reg)
    raw = skopeo_inspect(result.image, "--raw")
    assert raw["mediaType"] == OCI_MANIFEST and len(raw["layers"]) == 2
    assert result.base_digest == amd64


def test_engine_build_with_requirements_txt(registries, private_engine, tmp_path):
    """requirements.txt with nothing to install (no network here); the engine builds and pushes."""
    docker_host, engine = private_engine
    reg = registries["MLP_TEST_REGISTRY_AUTH"]
    base = registries["MLP_TEST_BASE_REF"]
    auth_file = registries["MLP_TEST_REGISTRY_AUTH_FILE"]
    ctx = ctx_for(base, tmp_path, payload=1000)
    (tmp_path / "nb" / "requirements.txt").write_text("# nothing to install: everything is in the image\n")
    ctx = ctx_for(base, tmp_path, payload=1000)
    assert "requirements.txt" in ctx.files and not ctx.has_requirements
    target = ImageRef(reg, unique_repo(), "1")
    result = build_engine(ctx, target, reg, auth_file, docker_host=docker_host)
    assert result.image.startswith(f"{reg}/{target.repository}@sha256:") and result.builder == "engine"
    import base64
    creds = base64.b64decode(json.loads(Path(auth_file).read_text())["auths"][reg]["auth"]).decode()
    info = skopeo_inspect(result.image, creds=creds)
    assert info["Labels"]["io.mlplatform.content-hash"] == "sha256:" + "a" * 64
    assert "MLP_MODULE_PATH=/mlp/code/model.py" in info["Env"]
    out = engine.containers.run(f"{reg}/{target.repository}:1", ["ls", "-A", "/mlp/code"], remove=True)
    assert out.decode().split() == [".mlpignore", "helpers.py", "iris.ipynb", "model.py", "requirements.txt", "vocab.bin"]


def test_engine_build_failure_is_clear(registries, private_engine, tmp_path):
    """A requirement on an image without pip: the build fails with the reason; nothing is pushed."""
    docker_host, _ = private_engine
    reg, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    (tmp_path / "nb").mkdir()
    (tmp_path / "nb" / "requirements.txt").write_text("some-package==1.0\n")
    ctx = ctx_for(base, tmp_path, payload=0)
    target = ImageRef(reg, unique_repo(), "1")
    with pytest.raises(EngineBuildError, match="requirements.txt needs pip, and the environment image has none"):
        build_engine(ctx, target, reg, docker_host=docker_host)
    with RegistryClient(reg) as client, pytest.raises(ImageNotInRegistry):
        client.get_manifest(target.repository, "1")
