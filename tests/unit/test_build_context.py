"""The build context: deterministic code layer, ignore files, the size cap, the Dockerfile."""

from __future__ import annotations

import gzip
import io
import os
import tarfile

import pytest

from mlplatform_server.builders.context import (
    ContextTooLarge, IgnoreRules, collect_folder, deterministic_tar, make_context)
from mlplatform_server.builders.registry import ImageRef, load_credentials, registry_scheme
from mlplatform_server.errors import InvalidInput

BASE = "127.0.0.1:55000/mlplatform/python:abc"


def context(folder=None, **kw):
    args = dict(model="iris", version="1", content_hash="sha256:" + "0" * 64, module_source="X = 1\n",
                env_image=BASE, notebook_name="iris.ipynb", notebook_bytes=b'{"cells": []}', folder=folder,
                git_commit="deadbeef", created="2026-01-02T03:04:05Z")
    args.update(kw)
    return make_context(**args)


def test_same_input_same_bytes_and_digest(tmp_path):
    (tmp_path / "helpers.py").write_text("Y = 2\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "small.csv").write_text("a,b\n1,2\n")
    first = context(tmp_path).code_layer()
    # other mtimes, modes and creation order must not matter
    os.utime(tmp_path / "helpers.py", (1, 1))
    os.chmod(tmp_path / "data" / "small.csv", 0o600)
    second = context(tmp_path).code_layer()
    assert first.data == second.data and first.digest == second.digest and first.diff_id == second.diff_id
    assert deterministic_tar({"b": b"2", "a/x": b"1"}) == deterministic_tar({"a/x": b"1", "b": b"2"})


def test_layer_entries_are_normalised(tmp_path):
    (tmp_path / "helpers.py").write_text("Y = 2\n")
    layer = context(tmp_path).code_layer()
    assert layer.digest.startswith("sha256:")
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(layer.data))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert names == ["mlp", "mlp/code", "mlp/code/helpers.py", "mlp/code/iris.ipynb", "mlp/code/model.py"]
    for m in members:
        assert (m.mtime, m.uid, m.gid, m.uname, m.gname) == (0, 0, 0, "", "")
        assert m.mode == (0o755 if m.isdir() else 0o644)
    assert gzip.decompress(layer.data)  # valid gzip; the gzip header carries no timestamp
    assert layer.data[4:8] == b"\0\0\0\0"


def test_different_code_different_digest():
    assert context().code_layer().digest != context(module_source="X = 2\n").code_layer().digest


def test_generated_module_wins_over_a_folder_model_py(tmp_path):
    (tmp_path / "model.py").write_text("OLD = 1\n")
    assert context(tmp_path).files["model.py"] == b"X = 1\n"


def test_mlpignore_wins_over_gitignore(tmp_path):
    (tmp_path / ".gitignore").write_text("*.py\n")
    (tmp_path / ".mlpignore").write_text("data/\n*.bin\n!keep.bin\n/top.txt\n")
    (tmp_path / "helpers.py").write_text("")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "big.csv").write_text("x")
    (tmp_path / "w.bin").write_text("x")
    (tmp_path / "keep.bin").write_text("x")
    (tmp_path / "top.txt").write_text("x")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "top.txt").write_text("x")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD").write_text("ref")
    files = collect_folder(tmp_path, 10**6)
    assert sorted(files) == [".gitignore", ".mlpignore", "helpers.py", "keep.bin", "sub/top.txt"]


def test_gitignore_when_no_mlpignore(tmp_path):
    (tmp_path / ".gitignore").write_text("# comment\n__pycache__/\n*.ckpt\nbuild/**\n")
    (tmp_path / "a.ckpt").write_text("x")
    (tmp_path / "nested").mkdir()
    (tmp_path / "nested" / "b.ckpt").write_text("x")
    (tmp_path / "nested" / "c.py").write_text("x")
    (tmp_path / "build").mkdir()
    (tmp_path / "build" / "out").write_text("x")
    assert sorted(collect_folder(tmp_path, 10**6)) == [".gitignore", "nested/c.py"]


def test_ignore_rules():
    rules = IgnoreRules("**/logs\n*.tmp\n!important.tmp\ndocs/*.md\n")
    assert rules.ignored("a/b/logs", True) and rules.ignored("logs", False)
    assert rules.ignored("x/y.tmp", False) and not rules.ignored("x/important.tmp", False)
    assert rules.ignored("docs/a.md", False) and not rules.ignored("docs/sub/a.md", False)


def test_size_cap_gives_a_clear_error(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"\0" * 3000)
    with pytest.raises(ContextTooLarge) as err:
        context(tmp_path, max_bytes=2048)
    assert err.value.status == 413
    assert "larger than the cap of" in err.value.message and ".mlpignore" in err.value.message
    (tmp_path / ".mlpignore").write_text("*.bin\n")
    assert "weights.bin" not in context(tmp_path, max_bytes=2048).files


def test_missing_folder_is_invalid_input(tmp_path):
    with pytest.raises(InvalidInput, match="not a directory"):
        context(tmp_path / "nope")


def test_dockerfile():
    text = context().dockerfile()
    assert f"FROM {BASE}" in text
    assert "COPY code/ /mlp/code/" in text
    assert 'ENV MLP_MODULE_PATH="/mlp/code/model.py"' in text
    for label in ("org.opencontainers.image.title", "org.opencontainers.image.version", "io.mlplatform.content-hash",
                  "org.opencontainers.image.revision", "org.opencontainers.image.base.name"):
        assert f'LABEL "{label}"=' in text
    # one label per fact: no platform copies of the OCI ones, the date is the config's `created`
    assert "io.mlplatform.model" not in text and "org.opencontainers.image.created" not in text
    assert "pip install" not in text


def test_requirements_add_a_pip_install(tmp_path):
    (tmp_path / "requirements.txt").write_text("# nothing yet\n\n")
    assert not context(tmp_path).has_requirements
    (tmp_path / "requirements.txt").write_text("numpy>=1.0  # pinned\n")
    ctx = context(tmp_path)
    assert ctx.has_requirements
    assert "pip install --no-cache-dir -r /mlp/code/requirements.txt" in ctx.dockerfile()


def test_docker_context_tar_holds_dockerfile_and_code():
    with tarfile.open(fileobj=io.BytesIO(context().docker_context_tar())) as tar:
        names = tar.getnames()
        assert "Dockerfile" in names and "code/model.py" in names
        assert tar.extractfile("Dockerfile").read().decode() == context().dockerfile()


def test_image_refs_and_credentials(tmp_path):
    ref = ImageRef.parse("127.0.0.1:55000/mlplatform/python:abc")
    assert (ref.registry, ref.repository, ref.tag, ref.digest) == ("127.0.0.1:55000", "mlplatform/python", "abc", None)
    ref = ImageRef.parse("reg.example.com/a/b@sha256:" + "1" * 64)
    assert ref.repository == "a/b" and ref.reference == "sha256:" + "1" * 64
    with pytest.raises(InvalidInput, match="not an image reference in a registry"):
        ImageRef.parse("localhost-image:tag")
    with pytest.raises(InvalidInput):
        ImageRef.parse("python:3.11")
    assert registry_scheme("127.0.0.1:5000") == "http" and registry_scheme("reg.example.com") == "https"
    assert registry_scheme("http://reg.example.com") == "http"
    auth = tmp_path / "config.json"
    auth.write_text('{"auths": {"https://reg.example.com": {"auth": "dTpwOnc="}, "other:1": {"username": "x", "password": "y"}}}')
    assert load_credentials(auth, "reg.example.com") == ("u", "p:w")
    assert load_credentials(auth, "other:1") == ("x", "y")
    assert load_credentials(auth, "nope") is None


def test_derived_config_adds_the_layer_and_a_history_entry_per_layer():
    """A history needs an entry per layer (Podman refuses to build FROM an image whose history lists
    fewer): a base without one gives a model image without one. ``compact`` (the default) keeps
    per base layer only its date, to the second; ``full`` keeps the base's history as it is."""
    from mlplatform_server.builders.layer import derive_config

    ctx = context()
    base = {"architecture": "amd64", "os": "linux", "config": {"Env": ["PATH=/bin", "MLP_MODULE_PATH=old"]},
            "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "1" * 64, "sha256:" + "4" * 64]}}
    bare = derive_config(base, ctx, "sha256:" + "2" * 64, BASE, "sha256:" + "3" * 64)
    assert "history" not in bare and "history" not in base
    assert bare["rootfs"]["diff_ids"] == ["sha256:" + "1" * 64, "sha256:" + "4" * 64, "sha256:" + "2" * 64]
    assert len(base["rootfs"]["diff_ids"]) == 2  # the base's config is not changed
    assert bare["config"]["Env"] == ["PATH=/bin", "MLP_MODULE_PATH=/mlp/code/model.py"]
    assert bare["config"]["Labels"]["org.opencontainers.image.title"] == "iris"

    with_history = dict(base, history=[
        {"created": "2026-11-27T12:21:34.254862773Z", "created_by": "debootstrap", "comment": "long"},
        {"created": "2026-11-27T12:25:05+01:00", "created_by": "ENV X=1", "empty_layer": True},
        {"created": "2026-11-27T12:26:24.7425232+01:00", "created_by": "pip install"}])
    derived = derive_config(with_history, ctx, "sha256:" + "2" * 64, BASE, "sha256:" + "3" * 64, history="full")
    assert derived["history"][:3] == with_history["history"]
    assert derived["history"][-1]["comment"] == f"iris:1 on {BASE}"
    non_empty = [h for h in derived["history"] if not h.get("empty_layer")]
    assert len(non_empty) == len(derived["rootfs"]["diff_ids"]) == 3

    compact = derive_config(with_history, ctx, "sha256:" + "2" * 64, BASE, "sha256:" + "3" * 64)
    assert compact["history"] == [{"created": "2026-11-27T12:21:34Z"}, {"created": "2026-11-27T12:26:24+01:00"},
                                  {"created": ctx.created, "created_by": "COPY code/ /mlp/code/"}]
    assert with_history["history"][0]["comment"] == "long"  # the base's config is not changed
    assert compact["rootfs"] == derived["rootfs"] and compact["config"] == derived["config"]
    with pytest.raises(ValueError, match="compact, full"):
        derive_config(base, ctx, "sha256:" + "2" * 64, BASE, "sha256:" + "3" * 64, history="none")


def test_the_base_is_named_in_the_config_labels_only_where_the_manifest_cannot_say_it():
    """An OCI manifest carries org.opencontainers.image.base.* as annotations (as buildah writes
    them): the config does not repeat them. A Docker manifest has no annotations: labels."""
    from mlplatform_server.builders.context import BASE_DIGEST_LABEL as BASE_DIGEST, BASE_NAME_LABEL as BASE_NAME
    from mlplatform_server.builders.layer import derive_config

    base = {"config": {"Labels": {"keep": "me"}}, "rootfs": {"type": "layers", "diff_ids": []}}
    as_labels = derive_config(base, context(), "sha256:" + "2" * 64, BASE, "sha256:" + "3" * 64)
    assert as_labels["config"]["Labels"][BASE_DIGEST] == "sha256:" + "3" * 64
    assert as_labels["config"]["Labels"][BASE_NAME] == BASE and as_labels["config"]["Labels"]["keep"] == "me"
    oci = derive_config(base, context(), "sha256:" + "2" * 64, BASE, "sha256:" + "3" * 64, labels_in_annotations=True)
    assert BASE_DIGEST not in oci["config"]["Labels"] and BASE_NAME not in oci["config"]["Labels"]
    assert oci["config"]["Labels"]["keep"] == "me" and oci["config"]["Labels"]["org.opencontainers.image.version"] == "1"
