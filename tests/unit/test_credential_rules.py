"""Credentials: validation, the encrypted store (SQLite and PostgreSQL), authorization in the
service, the environment a local backend hands to a run, and the Kubernetes Secret patches."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import json
import os
import stat
from pathlib import Path

import pytest
from sqlalchemy import select, update

from mlplatform_server.backends.base import Hardware, RunSpec
from mlplatform_server.backends.kubernetes import credentials as kcred
from mlplatform_server.backends.kubernetes.names import sanitize_label_value
from mlplatform_server.backends.process import ProcessBackend
from mlplatform_server.errors import BackendError, Forbidden, InvalidInput, NotFound
from mlplatform_server.services.auth import AuthService, Principal
from mlplatform_server.services.credentials import (
    MAX_KEY_LENGTH, MAX_PER_USER, MAX_VALUE_BYTES, CredentialService, check_key, check_value,
)
from mlplatform_server.store import models as m
from mlplatform_server.store.credentials import KEY_FILE, CredentialVault, load_or_create_key

SECRET = "ghp_" + "s3cr3t-" * 4


# -- validation ---------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["GITHUB_TOKEN", "_x", "a", "DB_PASSWORD_2", "x" * MAX_KEY_LENGTH])
def test_valid_keys(key):
    assert check_key(key) == key


@pytest.mark.parametrize("key", ["", "1ABC", "MY-TOKEN", "a b", "a/b", "ÄB", "x" * (MAX_KEY_LENGTH + 1), None, 3])
def test_invalid_keys_name_the_rule(key):
    with pytest.raises(InvalidInput, match="expected an environment variable name") as info:
        check_key(key)
    assert info.value.status == 400


@pytest.mark.parametrize("key", ["MLP_TOKEN", "mlp_url", "MLP_"])
def test_platform_prefix_is_reserved(key):
    with pytest.raises(InvalidInput, match="reserved for the platform"):
        check_key(key)


@pytest.mark.parametrize("value, message", [
    (None, "must be a string, got null"), (42, "must be a string, got a number"),
    ({"v": 1}, "must be a string, got an object"), ("", "must not be empty"),
    ("a\x00b", "NUL"), ("x" * (MAX_VALUE_BYTES + 1), f"larger than {MAX_VALUE_BYTES} bytes"),
    ("é" * (MAX_VALUE_BYTES // 2 + 1), "larger than"),  # bytes, not characters
])
def test_invalid_values_are_refused_without_echoing_them(value, message):
    with pytest.raises(InvalidInput, match=message) as info:
        check_value(value, "K")
    assert info.value.message.startswith("Credential K:")
    if isinstance(value, str) and value:
        assert value not in info.value.message


def test_largest_value_is_accepted():
    assert check_value("x" * MAX_VALUE_BYTES, "K")


# -- the encrypted store --------------------------------------------------------------------------

@pytest.fixture
def users(store):
    auth = AuthService(store, "admin-token")
    for name in ("alice", "bob"):
        auth.create_user(Principal("admin", admin=True), name)
    return auth


def test_vault_roundtrip_encrypted_at_rest(store, users, tmp_path):
    key_file = tmp_path / "keys" / KEY_FILE
    vault = CredentialVault(store, key_file)
    first = vault.put("alice", "GITHUB_TOKEN", SECRET)
    vault.put("alice", "DB_PASSWORD", "pw-1")
    vault.put("bob", "GITHUB_TOKEN", "bobs")
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert vault.keys("alice") == {"DB_PASSWORD": vault.keys("alice")["DB_PASSWORD"], "GITHUB_TOKEN": first}
    assert vault.values("alice") == {"GITHUB_TOKEN": SECRET, "DB_PASSWORD": "pw-1"}
    assert vault.values("bob") == {"GITHUB_TOKEN": "bobs"}
    with store.session() as s:
        stored = s.execute(select(m.Credential.ciphertext)).scalars().all()
    assert len(stored) == 3 and not any(SECRET in c or "pw-1" in c for c in stored)

    later = vault.put("alice", "GITHUB_TOKEN", "rotated")  # replace: one row, newer time
    assert later >= first and vault.values("alice")["GITHUB_TOKEN"] == "rotated"
    assert vault.delete("alice", "GITHUB_TOKEN") and not vault.delete("alice", "GITHUB_TOKEN")
    assert list(vault.keys("alice")) == ["DB_PASSWORD"]
    # another vault over the same key file (a restarted server) reads the same values
    assert CredentialVault(store, key_file).values("alice") == {"DB_PASSWORD": "pw-1"}


def test_concurrent_writes_of_one_new_key_all_succeed(store, users, tmp_path):
    """Two browsers saving the same new credential at once: no IntegrityError, one row, one value."""
    import threading

    vault = CredentialVault(store, tmp_path / KEY_FILE)
    values = [f"pw-{i}" for i in range(8)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(values))

    def put(value: str) -> None:
        start.wait()
        try:
            vault.put("alice", "RACE", value)
        except BaseException as exc:  # noqa: BLE001 - the assertion below names it
            errors.append(exc)

    threads = [threading.Thread(target=put, args=(v,)) for v in values]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert list(vault.keys("alice")) == ["RACE"]
    assert vault.values("alice")["RACE"] in values


def test_a_ciphertext_moved_to_another_user_is_refused(store, users, tmp_path):
    vault = CredentialVault(store, tmp_path / KEY_FILE)
    vault.put("alice", "TOKEN", SECRET)
    vault.put("bob", "TOKEN", "bobs")
    with store.session() as s:
        alices = s.execute(select(m.Credential.ciphertext).where(m.Credential.user == "alice")).scalar_one()
        s.execute(update(m.Credential).where(m.Credential.user == "bob").values(ciphertext=alices))
    with pytest.raises(BackendError, match="credential TOKEN of bob cannot be decrypted") as info:
        vault.values("bob")
    assert SECRET not in info.value.message


def test_a_replaced_key_file_says_what_to_do(store, users, tmp_path):
    key_file = tmp_path / KEY_FILE
    CredentialVault(store, key_file).put("alice", "TOKEN", SECRET)
    key_file.unlink()
    with pytest.raises(BackendError, match="set it again with `mlp credentials set TOKEN`"):
        CredentialVault(store, key_file).values("alice")
    key_file.write_text("not a key")
    with pytest.raises(BackendError, match="not a valid Fernet key"):
        CredentialVault(store, key_file).values("alice")


def test_key_file_is_created_once_and_tightened(tmp_path):
    path = tmp_path / KEY_FILE
    key = load_or_create_key(path)
    assert load_or_create_key(path) == key and len(key) == 44
    assert [p.name for p in tmp_path.iterdir()] == [KEY_FILE]  # no temporary file left
    os.chmod(path, 0o644)
    assert load_or_create_key(path) == key
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# -- the service: who may touch what; a local backend's environment --------------------------------

def test_service_authorization_and_limits(store, users, tmp_path):
    backend = ProcessBackend()
    backend.credential_store = CredentialVault(store, tmp_path / KEY_FILE)
    service = CredentialService(store, backend)
    alice, bob, admin = Principal("alice"), Principal("bob"), Principal("admin", admin=True)

    async def scenario() -> None:
        put = await service.put(alice, "GITHUB_TOKEN", SECRET)
        assert put["user"] == "alice" and put["key"] == "GITHUB_TOKEN" and put["created"] is True
        assert SECRET not in json.dumps(put)
        assert (await service.put(alice, "GITHUB_TOKEN", SECRET))["created"] is False
        listed = await service.list(alice)
        assert listed["user"] == "alice" and [i["key"] for i in listed["items"]] == ["GITHUB_TOKEN"]
        assert dt.datetime.fromisoformat(listed["items"][0]["updated_at"]).tzinfo is not None
        assert (await service.list(bob))["items"] == []
        assert (await service.list(bob, "bob"))["user"] == "bob"
        for call in (service.list(bob, "alice"), service.put(bob, "X", "v", "alice"),
                     service.delete(bob, "GITHUB_TOKEN", "alice")):
            with pytest.raises(Forbidden, match="Only an admin"):
                await call
        with pytest.raises(NotFound, match="bob has no credential named 'GITHUB_TOKEN'"):
            await service.delete(bob, "GITHUB_TOKEN")
        with pytest.raises(Forbidden):  # a run's token manages nothing
            await service.list(Principal("alice", run_id="r1"))
        with pytest.raises(NotFound, match="No user named 'carol'"):
            await service.put(admin, "X", "v", "carol")
        assert (await service.put(admin, "FOR_BOB", "b", "bob"))["user"] == "bob"
        assert [i["key"] for i in (await service.list(admin, "bob"))["items"]] == ["FOR_BOB"]

        spec = RunSpec(run_id="r1", action="train", user="alice", model="m", version="1",
                       module_path=Path("/x.py"), run_dir=tmp_path, hyperparameters={},
                       hardware=Hardware(name="cpu", cpu=1, memory="1Gi"), image=None,
                       env={"MLP_RUN_ID": "r1"})
        env = (await backend.with_credentials(spec)).env
        assert env == {"GITHUB_TOKEN": SECRET, "MLP_RUN_ID": "r1"}
        assert (await backend.with_credentials(spec)).env is not spec.env and spec.env == {"MLP_RUN_ID": "r1"}

        await service.delete(admin, "FOR_BOB", "bob")
        for i in range(MAX_PER_USER - 1):
            await service.put(alice, f"K{i}", "v")
        with pytest.raises(InvalidInput, match=f"the most there may be \\({MAX_PER_USER}\\)"):
            await service.put(alice, "ONE_TOO_MANY", "v")
        await service.put(alice, "K0", "replacing is fine")
        await service.delete(alice, "K0")
        await service.put(alice, "ONE_MORE", "v")

    asyncio.run(scenario())


# -- Kubernetes: the Secret and its patches (pure) --------------------------------------------------

WHEN = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def test_kube_secret_and_patches():
    ann = kcred.updated_annotation("_GH_")
    assert ann.startswith("credentials.mlplatform.io/updated-") and len(ann.split("/")[1]) <= 63
    labels = {"app.kubernetes.io/managed-by": "mlplatform", "mlplatform.io/component": "credentials",
              "mlplatform.io/user": sanitize_label_value("alice@example.com")}
    secret = kcred.make_credentials_secret("ns", "alice@example.com", "_GH_", "v@lue", WHEN)
    assert secret == {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {
            "name": secret["metadata"]["name"], "namespace": "ns", "labels": labels,
            "annotations": {"mlplatform.io/user": "alice@example.com",
                            ann: json.dumps({"key": "_GH_", "updated": "2026-01-02T03:04:05+00:00"})},
        },
        "data": {"_GH_": base64.b64encode(b"v@lue").decode()},
    }
    assert secret["metadata"]["name"].startswith("mlp-cred-alice-example-com-")
    assert kcred.set_patch("alice@example.com", "_GH_", "v@lue", WHEN) == {
        "metadata": {k: v for k, v in secret["metadata"].items() if k in ("labels", "annotations")},
        "data": secret["data"]}
    assert kcred.delete_patch("_GH_") == {"metadata": {"annotations": {ann: None}}, "data": {"_GH_": None}}
    assert kcred.keys_of(secret) == {"_GH_": WHEN}
    # a key written outside the platform (no annotation) is listed without a time; no Secret: none
    secret["data"]["OTHER"] = "eA=="
    assert kcred.keys_of(secret) == {"OTHER": None, "_GH_": WHEN}
    assert kcred.keys_of(None) == {}
