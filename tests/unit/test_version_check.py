"""A submit's version check (ModelService.resolve_for_run) on a real SQLite store: the submits of one
group-commit batch share a transaction and ask the database once per model version; a later
transaction asks again, so it sees what was saved in between."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from mlplatform_server.errors import NotFound
from mlplatform_server.services.auth import Principal
from mlplatform_server.services.models import ModelService
from mlplatform_server.store.db import Store, sqlite_url
from notebooks import realistic_notebook

ALICE = Principal("alice")


@pytest.fixture
def models(tmp_path):
    store = Store(sqlite_url(tmp_path))
    yield ModelService(store, tmp_path)
    store.close()


@pytest.fixture
def version_queries(models):
    """How many statements read model_versions (the check, or a full load)."""
    seen: list[str] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "FROM model_versions" in statement:
            seen.append(statement)

    event.listen(models.store.engine, "before_cursor_execute", count)
    yield seen
    event.remove(models.store.engine, "before_cursor_execute", count)


def test_one_transaction_checks_each_version_once(models, version_queries):
    models.save(ALICE, "iris", realistic_notebook(), "iris.ipynb", version="v1")
    with models.store.transaction() as conn:
        first = models.resolve_for_run(conn, ALICE, "iris", None)
        before = len(version_queries)
        again = [models.resolve_for_run(conn, ALICE, "iris", None) for _ in range(4)]
        assert len(version_queries) == before  # the batch's later submits: no query
        assert {v.id for v in again} == {first.id} and first.version == "v1"
        models.resolve_for_run(conn, ALICE, "iris", "v1")  # another name:version is its own check
        assert len(version_queries) == before + 1

    models.save(ALICE, "iris", realistic_notebook(), "iris.ipynb", version="v2")
    with models.store.transaction() as conn:  # a new transaction asks again and sees v2
        assert models.resolve_for_run(conn, ALICE, "iris", None).version == "v2"


def test_a_missing_version_is_not_found_every_time(models):
    models.save(ALICE, "iris", realistic_notebook(), "iris.ipynb", version="v1")
    with models.store.transaction() as conn:
        for _ in range(2):  # the remembered check (no row) still says why
            with pytest.raises(NotFound, match="no version 'v9'"):
                models.resolve_for_run(conn, ALICE, "iris", "v9")
        with pytest.raises(NotFound, match="No model named 'iris'"):  # not bob's to see
            models.resolve_for_run(conn, Principal("bob"), "iris", "v1")
