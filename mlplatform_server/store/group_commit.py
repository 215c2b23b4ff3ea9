"""Group commit: the inserts of concurrent requests written in one transaction.

A run's submit is mostly fixed costs around one INSERT: opening a transaction, the statement, the
commit (on SQLite the write of the WAL). Submits that reach their insert during the same turn of
the event loop share one transaction and one multi-row INSERT, so those costs are paid once per
batch instead of once per run. Nothing waits to fill a batch: with one request at a time a batch is
one row, written at once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.sql import Executable

from .db import Store

log = logging.getLogger(__name__)

T = TypeVar("T")
Prepare = Callable[[Connection], tuple[dict[str, Any], T]]


class GroupInsert(Generic[T]):
    """Rows of one INSERT ``statement``, each made by a ``prepare(connection)`` that reads what it
    needs in the shared transaction and returns ``(row, result)``. An error ``prepare`` raises fails
    its own request only. If the INSERT or the commit fails (a constraint, a lost connection), every
    write of the batch is tried again alone, each in its own transaction, so that one bad row fails
    only the request that made it."""

    def __init__(self, store: Store, statement: Executable) -> None:
        self.store = store
        self.statement = statement
        self._queue: list[tuple[Prepare[T], asyncio.Future[T]]] = []
        self.batches = 0  # transactions written and rows in them (tests assert the batching)
        self.rows = 0

    async def insert(self, prepare: Prepare[T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._queue.append((prepare, future))
        if len(self._queue) == 1:
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        batch, self._queue = [(p, f) for p, f in self._queue if not f.done()], []
        if not batch:
            return
        try:
            written = self._write_together(batch)
        except Exception:
            log.debug("a batch of %d inserts failed; writing each alone", len(batch), exc_info=True)
            for prepare, future in batch:
                self._write_alone(prepare, future)
            return
        for future, result in written:
            if not future.done():
                future.set_result(result)

    def _write_together(self, batch: list[tuple[Prepare[T], asyncio.Future[T]]]) -> list[tuple[asyncio.Future[T], T]]:
        written: list[tuple[asyncio.Future[T], T]] = []
        rows: list[dict[str, Any]] = []
        with self.store.transaction() as connection:
            for prepare, future in batch:
                try:
                    row, result = prepare(connection)
                except Exception as exc:  # e.g. NotFound: that request's answer, not the batch's
                    future.set_exception(exc)
                    continue
                rows.append(row)
                written.append((future, result))
            if rows:
                connection.execute(self.statement, rows)
        self.batches += 1
        self.rows += len(rows)
        return written

    def _write_alone(self, prepare: Prepare[T], future: asyncio.Future[T]) -> None:
        if future.done():  # its error was already given to it
            return
        try:
            with self.store.transaction() as connection:
                row, result = prepare(connection)
                connection.execute(self.statement, row)
        except Exception as exc:
            future.set_exception(exc)
        else:
            self.batches += 1
            self.rows += 1
            future.set_result(result)
