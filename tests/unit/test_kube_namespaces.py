"""One namespace per user on Kubernetes: namespace names, references, and the server's options."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.backend import KubernetesBackend
from mlplatform_server.backends.kubernetes.namespaces import (DEFAULT_PREFIX, join_ref, split_ref, user_namespace,
                                                              validate_prefix)
from mlplatform_server.config import KubernetesSettings
from mlplatform_server.errors import ConfigError
from mlplatform_server.server import ServerOptions, kubernetes_namespaces

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def test_plain_user_names_keep_their_name():
    assert user_namespace("mlp-u-", "alice") == "mlp-u-alice"
    assert user_namespace("team-", "bob-2") == "team-bob-2"


@pytest.mark.parametrize("user", ["Alice", "alice@example.com", "a_b", "a.b", "x" * 128, "-", "ÄÖ", "a" * 57])
def test_every_user_name_gives_a_dns_label_of_at_most_63(user):
    ns = user_namespace(DEFAULT_PREFIX, user)
    assert DNS_LABEL.match(ns), ns
    assert len(ns) <= 63 and ns.startswith(DEFAULT_PREFIX)


def test_names_that_sanitize_alike_do_not_collide():
    users = ["alice", "Alice", "ALICE", "a.lice", "a_lice", "a-lice", "alice@example.com", "alice@example.org",
             "x" * 100 + "1", "x" * 100 + "2"]
    namespaces = [user_namespace(DEFAULT_PREFIX, u) for u in users]
    assert len(set(namespaces)) == len(users), namespaces
    assert user_namespace(DEFAULT_PREFIX, "Alice") == user_namespace(DEFAULT_PREFIX, "Alice")  # stable


@pytest.mark.parametrize("prefix", ["", "-x", "Mlp-", "mlp_u", "1abc", "a" * 41, "mlp/u"])
def test_bad_prefixes_are_refused_with_what_is_expected(prefix):
    with pytest.raises(ValueError, match="expected a lowercase letter"):
        validate_prefix(prefix)


def test_references_name_their_namespace():
    assert join_ref("mlp-u-alice", "mlp-run-1") == "mlp-u-alice/mlp-run-1"
    assert join_ref(None, "mlp-run-1") == "mlp-run-1"
    assert split_ref("mlp-u-alice/mlp-run-1") == ("mlp-u-alice", "mlp-run-1")
    assert split_ref("mlp-run-1") == (None, "mlp-run-1")


def _backend(**kw) -> KubernetesBackend:
    from mlplatform_server.backends.kubernetes.client import KubeClient, KubeConfig

    client = KubeClient(KubeConfig("https://127.0.0.1:1", False))  # never called
    return KubernetesBackend(artifacts=mf.ArtifactStore(pvc="mlp-data", root=Path("/data")), client=client, **kw)


def test_backend_namespaces_and_refs_in_both_modes():
    one = _backend(namespace="ml")
    assert one.namespace_for("alice") == "ml" and one._ref("ml", "job") == "job"
    assert one._locate("job", "alice") == ("ml", "job")
    assert one.managed_namespace("ml") and not one.managed_namespace("mlp-u-alice")
    per_user = _backend(namespace=None, namespace_prefix="mlp-u-")
    assert per_user.namespace_for("alice") == "mlp-u-alice"
    assert per_user._ref("mlp-u-alice", "job") == "mlp-u-alice/job"
    assert per_user._locate("mlp-u-bob/job", "alice") == ("mlp-u-bob", "job")
    assert per_user._locate("job", "alice") == ("mlp-u-alice", "job")
    assert per_user.managed_namespace("mlp-u-bob")
    for other in ("mlp-u-", "kube-system", "ml", "default"):
        assert not per_user.managed_namespace(other), other
    with pytest.raises(ValueError, match="not both"):
        _backend(namespace="ml", namespace_prefix="mlp-u-")
    with pytest.raises(ValueError, match="one namespace or a namespace prefix"):
        _backend(namespace=None)


def test_job_manifest_lands_in_the_users_namespace():
    from mlplatform_server.backends.base import Hardware, RunSpec

    spec = RunSpec(run_id="r1", action="train", user="Bob", model="iris", version="v1",
                   module_path=Path("/data/models/m.py"), run_dir=Path("/data/runs/r1"), hyperparameters={},
                   hardware=Hardware(name="cpu", cpu=1, memory="1Gi"), image="img@sha256:" + "a" * 64,
                   env={"MLP_RUN_ID": "r1"})
    job = _backend(namespace=None, namespace_prefix="mlp-u-").job_manifest(spec)
    assert job["metadata"]["namespace"] == user_namespace("mlp-u-", "Bob")
    assert _backend(namespace="ml").job_manifest(spec)["metadata"]["namespace"] == "ml"


def test_server_options_choose_one_mode():
    none = KubernetesSettings()
    assert kubernetes_namespaces(ServerOptions(namespace="ml"), none) == ("ml", None)
    assert kubernetes_namespaces(ServerOptions(namespace_per_user=True), none) == (None, DEFAULT_PREFIX)
    assert kubernetes_namespaces(ServerOptions(namespace_per_user=True, namespace_prefix="t-"), none) == (None, "t-")
    from_yaml = KubernetesSettings(namespace_per_user=True, namespace_prefix="team-")
    assert kubernetes_namespaces(ServerOptions(), from_yaml) == (None, "team-")
    assert kubernetes_namespaces(ServerOptions(namespace="ml"), from_yaml) == ("ml", None)  # the option wins
    assert kubernetes_namespaces(ServerOptions(), KubernetesSettings(namespace="ml")) == ("ml", None)
    with pytest.raises(ConfigError, match="--namespace and --namespace-per-user exclude each other"):
        kubernetes_namespaces(ServerOptions(namespace="ml", namespace_per_user=True), none)
    with pytest.raises(ConfigError, match="--namespace-prefix needs --namespace-per-user"):
        kubernetes_namespaces(ServerOptions(namespace_prefix="t-"), none)
    with pytest.raises(ConfigError, match="expected a lowercase letter"):
        kubernetes_namespaces(ServerOptions(namespace_per_user=True, namespace_prefix="Bad_"), none)


def test_platform_yaml_kubernetes_section_is_checked():
    with pytest.raises(ValueError, match="exclude each other"):
        KubernetesSettings(namespace="ml", namespace_per_user=True)
    with pytest.raises(ValueError, match="needs namespace_per_user"):
        KubernetesSettings(namespace_prefix="t-")
    with pytest.raises(ValueError, match="expected a lowercase letter"):
        KubernetesSettings(namespace_per_user=True, namespace_prefix="_")


@pytest.mark.parametrize("args, message", [
    (["--namespace", "ns", "--namespace-per-user"], "error: --namespace and --namespace-per-user exclude each other"),
    (["--namespace-prefix", "t-"], "error: --namespace-prefix needs --namespace-per-user"),
    (["--namespace-per-user", "--namespace-prefix", "Bad_"], "error: --namespace-prefix: namespace prefix 'Bad_'"),
])
def test_server_namespace_option_errors_are_one_line(tmp_path, args, message):
    import os
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", "server", "--backend", "kubernetes",
                           "--data-dir", str(tmp_path / "data"), "--port", "0", "--pvc", "mlp-data", *args],
                          capture_output=True, text=True, timeout=60, env={**os.environ, "MLP_TOKEN": "x"})
    assert proc.returncode == 1
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr
