"""The store on SQLite and on a real PostgreSQL (started by `make test`)."""

from __future__ import annotations

import datetime as dt

import pytest
from sqlalchemy import inspect

from mlplatform_server.errors import Conflict, Forbidden, NotFound
from mlplatform_server.services.auth import AuthService, Principal
from mlplatform_server.services.models import ModelService
from mlplatform_server.store import models as m
from mlplatform_server.store.db import Store
from notebooks import realistic_notebook


def test_migrations_create_every_table(store):
    tables = set(inspect(store.engine).get_table_names())
    assert {"users", "api_tokens", "models", "model_versions", "runs", "metrics", "deployments",
            "alembic_version"} <= tables
    Store(store.url)  # a second upgrade is a no-op


def test_save_versions_and_roundtrip(store, tmp_path):
    models = ModelService(store, tmp_path)
    alice = Principal("alice")
    first = models.save(alice, "iris", realistic_notebook(), "iris.ipynb")
    assert first["version"] == "1" and first["created"]
    again = models.save(alice, "iris", realistic_notebook(), "iris.ipynb")
    assert again["version"] == "1" and not again["created"]
    changed = realistic_notebook().replace('\\"C\\": 1.0', '\\"C\\": 2.0')
    second = models.save(alice, "iris", changed, "iris.ipynb")
    assert second["version"] == "2"
    with pytest.raises(Conflict, match="already has a version '1' with different code"):
        models.save(alice, "iris", changed.replace("2.0", "3.0"), "iris.ipynb", version="1")
    with pytest.raises(Forbidden):
        models.save(Principal("bob"), "iris", changed, "iris.ipynb")
    with pytest.raises(NotFound):
        models.get(Principal("bob"), "iris")
    version = models.get_version(alice, "iris", "2")
    assert version["hyperparameters"][0] == {"name": "C", "type": "float", "default": 2.0}
    assert "class Model" in version["module_source"]
    assert models.list(alice, None, 0).total == 1
    assert models.list(Principal("bob"), None, 0).total == 0
    assert models.list(Principal("root", admin=True), None, 0).total == 1


def test_failed_save_writes_nothing(store, tmp_path):
    models = ModelService(store, tmp_path)
    with pytest.raises(Exception):
        models.save(Principal("alice"), "broken", '{"cells": [], "nbformat": 4}', "broken.ipynb")
    assert models.list(Principal("alice"), None, 0).total == 0
    assert not (tmp_path / "models" / "broken").exists()


def test_times_are_timezone_aware_and_json_roundtrips(store):
    with store.session() as s:
        s.add(m.User(name="u"))
    with store.session() as s:
        user = s.get(m.User, "u")
        assert user.created_at.tzinfo is not None
        assert abs((dt.datetime.now(dt.timezone.utc) - user.created_at).total_seconds()) < 60


def test_tokens_are_stored_as_digests(store):
    auth = AuthService(store, admin_token="admin-secret")
    root = auth.authenticate("admin-secret")
    assert root.admin
    auth.create_user(root, "alice")
    token = auth.create_token(root, "alice")["token"]
    assert auth.authenticate(token) == Principal("alice")
    with store.session() as s:
        stored = [t.digest for t in s.query(m.ApiToken).all()]
    assert token not in stored and len(stored[0]) == 64
    with pytest.raises(Exception, match="Invalid API token"):
        auth.authenticate("nope")
    with pytest.raises(Forbidden):
        auth.create_user(Principal("alice"), "mallory")
