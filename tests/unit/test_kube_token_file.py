"""A token file (in-cluster: the pod's projected service-account token) is read again once a minute,
as client-go does, not for every request: a rotated token is picked up, without a file read per call."""

from __future__ import annotations

from mlplatform_server.backends.kubernetes import client as kube_client
from mlplatform_server.backends.kubernetes.client import KubeConfig


def test_a_token_file_is_read_again_after_a_minute(tmp_path, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(kube_client.time, "monotonic", lambda: now[0])
    token = tmp_path / "token"
    token.write_text("first-token\n")
    config = KubeConfig("https://127.0.0.1:6443", False, token_file=token)
    assert config.headers() == {"Authorization": "Bearer first-token"}

    token.write_text("rotated-token\n")
    now[0] += kube_client.TOKEN_FILE_SECONDS - 1
    assert config.headers() == {"Authorization": "Bearer first-token"}  # within the minute: the copy
    now[0] += 1
    assert config.headers() == {"Authorization": "Bearer rotated-token"}


def test_a_token_in_the_kubeconfig_is_sent_as_is(tmp_path):
    assert KubeConfig("https://127.0.0.1:6443", False, token="abc").headers() == {"Authorization": "Bearer abc"}
    assert KubeConfig("https://127.0.0.1:6443", False).headers() == {}
