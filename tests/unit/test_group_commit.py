"""Group commit (store/group_commit.py) on a real SQLite store: inserts queued in one turn of the
event loop share a transaction; a failing request fails alone, whether its prepare raises or its
row breaks a constraint of the shared INSERT."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import insert, select

from mlplatform_server.errors import NotFound
from mlplatform_server.store import models as m
from mlplatform_server.store.db import Store, sqlite_url
from mlplatform_server.store.group_commit import GroupInsert


@pytest.fixture
def store(tmp_path):
    store = Store(sqlite_url(tmp_path))
    yield store
    store.close()


def user_row(name: str):
    def prepare(connection):
        taken = connection.execute(select(m.User.name).where(m.User.name == name)).first()
        return {"name": name, "admin": False}, ("made", name, taken is not None)
    return prepare


def names(store: Store) -> set[str]:
    with store.transaction() as connection:
        return set(connection.execute(select(m.User.name)).scalars())


async def test_inserts_of_one_loop_turn_share_one_transaction(store):
    group = GroupInsert(store, insert(m.User))
    results = await asyncio.gather(*(group.insert(user_row(f"u{i}")) for i in range(5)))
    assert results == [("made", f"u{i}", False) for i in range(5)]
    assert (group.batches, group.rows) == (1, 5)
    assert names(store) == {f"u{i}" for i in range(5)}
    # One at a time: each is written at once, a batch of one.
    assert await group.insert(user_row("solo")) == ("made", "solo", False)
    assert (group.batches, group.rows) == (2, 6)


async def test_an_error_in_prepare_fails_only_its_request(store):
    group = GroupInsert(store, insert(m.User))

    def missing(connection):
        raise NotFound("No model named 'nope'")

    results = await asyncio.gather(group.insert(user_row("a")), group.insert(missing), group.insert(user_row("b")),
                                   return_exceptions=True)
    assert results[0] == ("made", "a", False) and results[2] == ("made", "b", False)
    assert isinstance(results[1], NotFound) and "nope" in str(results[1])
    assert names(store) == {"a", "b"}


async def test_a_row_that_breaks_a_constraint_fails_alone(store):
    group = GroupInsert(store, insert(m.User))
    await group.insert(user_row("taken"))
    results = await asyncio.gather(group.insert(user_row("x")), group.insert(user_row("taken")),
                                   group.insert(user_row("y")), return_exceptions=True)
    assert results[0] == ("made", "x", False) and results[2] == ("made", "y", False)
    assert isinstance(results[1], Exception) and "UNIQUE" in str(results[1]).upper()
    assert names(store) == {"taken", "x", "y"}
