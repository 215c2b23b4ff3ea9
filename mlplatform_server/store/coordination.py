"""Who does what when several ``mlp server`` processes share one database.

- **One leader** runs the background loop (runs' and deployments' true states, schedules, log
  archiving, metric recovery); the others serve the API only.
- **One change at a time per deployment name**, across every server: a rollout, a scale and an
  undeploy of one name never interleave, and the leader's pass leaves a name alone while it changes.

PostgreSQL: session advisory locks (``pg_try_advisory_lock``), each on a connection of its own,
outside the store's pool, so a server that dies (its connections close) lets go of all it held and
a busy pool never delays a lock. The connections send TCP keepalives, so the database also notices
a server whose machine vanished (about 25 s), and a server cut off from the database learns it
within 30 s. SQLite: one server per file, so in-process locks and always the leader.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Iterable
from typing import Protocol

from sqlalchemy import NullPool, create_engine, text
from sqlalchemy.engine import Connection, Engine

log = logging.getLogger("mlplatform")

# First key of each advisory lock (the "class"; the second is the name's hash). Fixed, so that
# every server and every version agrees on them; "mlp" in the high bytes.
LEADER = 0x6D6C7000
DEPLOYMENT = 0x6D6C7001
MIGRATION = 0x6D6C7002

# libpq keepalives: a server that vanished without closing its connections (its node died) is
# noticed after ≈ 10 + 3 × 5 s, and its locks freed. tcp_user_timeout: a server cut off from the
# database learns it within 30 s too (its next check fails instead of waiting on TCP for minutes).
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3,
               "tcp_user_timeout": 30_000}


def name_key(name: str) -> int:
    """The second key for ``name``: 31 bits of its hash (a collision only makes two names wait for
    each other)."""
    return int.from_bytes(hashlib.blake2b(name.encode(), digest_size=4).digest(), "big") & 0x7FFFFFFF


class Coordination(Protocol):
    def is_leader(self) -> bool:
        """Whether this server leads now; a standby becomes the leader here once the last one is gone."""
        ...

    def lock(self, scope: int, name: str) -> contextlib.AbstractAsyncContextManager[None]:
        """Hold ``name``'s lock in ``scope`` (waiting for it) across every server."""
        ...

    def held(self, scope: int, names: Iterable[str]) -> set[str]:
        """Those of ``names`` whose lock some server (this one too) holds now."""
        ...

    def close(self) -> None: ...


class LocalCoordination:
    """One server: asyncio locks, and always the leader."""

    def __init__(self) -> None:
        self._locks: dict[tuple[int, str], asyncio.Lock] = {}

    def is_leader(self) -> bool:
        return True

    def lock(self, scope: int, name: str) -> asyncio.Lock:
        return self._locks.setdefault((scope, name), asyncio.Lock())

    def held(self, scope: int, names: Iterable[str]) -> set[str]:
        return {n for n in names if (lock := self._locks.get((scope, n))) is not None and lock.locked()}

    def close(self) -> None:
        self._locks.clear()


class PostgresCoordination:
    """Several servers on one PostgreSQL database."""

    def __init__(self, url: str, poll_seconds: float = 0.05) -> None:
        self.engine: Engine = create_engine(url, poolclass=NullPool, connect_args=_KEEPALIVES)
        self.poll_seconds = poll_seconds
        self._local = LocalCoordination()  # this server's own callers queue here, not on the database
        self._candidate: Connection | None = None  # holds the leader lock while leading
        self._leading = False

    def _connect(self) -> Connection:
        return self.engine.connect().execution_options(isolation_level="AUTOCOMMIT")

    @staticmethod
    def _try_lock(connection: Connection, scope: int, key: int) -> bool:
        query = text("SELECT pg_try_advisory_lock(CAST(:scope AS integer), CAST(:key AS integer))")
        return bool(connection.execute(query, {"scope": scope, "key": key}).scalar())

    @staticmethod
    def _unlock(connection: Connection, scope: int, key: int) -> None:
        """Let go now: a closed session's locks go only a moment after the close, when its backend
        exits, and the next question (``held``, a standby's try) could still find them held."""
        query = text("SELECT pg_advisory_unlock(CAST(:scope AS integer), CAST(:key AS integer))")
        with contextlib.suppress(Exception):  # a dead session holds nothing anyway
            connection.execute(query, {"scope": scope, "key": key})

    def _standing(self) -> Connection:
        """This server's long-lived session: it holds the leader lock while leading, and asks
        what is held (no new connection per pass)."""
        if self._candidate is None:
            self._candidate = self._connect()
        return self._candidate

    def is_leader(self) -> bool:
        try:
            if self._leading:
                self._standing().execute(text("SELECT 1"))  # the session, and so the lock, is alive
            else:
                self._leading = self._try_lock(self._standing(), LEADER, 0)
        except Exception as exc:  # the database or the connection went away: whatever it held is gone
            log.warning("leader check failed (%s: %s); not leading until the database answers again",
                        exc.__class__.__name__, exc)
            self._drop_candidate()
        return self._leading

    def _drop_candidate(self) -> None:
        self._leading = False
        if self._candidate is not None:
            with contextlib.suppress(Exception):
                self._candidate.invalidate()
            with contextlib.suppress(Exception):
                self._candidate.close()
            self._candidate = None

    @contextlib.asynccontextmanager
    async def lock(self, scope: int, name: str) -> AsyncIterator[None]:
        key = name_key(name)
        async with self._local.lock(scope, name):
            connection = self._connect()
            acquired = False
            try:
                while not self._try_lock(connection, scope, key):
                    await asyncio.sleep(self.poll_seconds)
                acquired = True
                yield
            finally:
                if acquired:
                    self._unlock(connection, scope, key)
                connection.close()  # no pool: the session ends, and with it anything it still held

    def held(self, scope: int, names: Iterable[str]) -> set[str]:
        by_key: dict[int, list[str]] = {}
        for name in names:
            by_key.setdefault(name_key(name), []).append(name)
        if not by_key:
            return set()
        try:  # advisory locks belong to one database: another platform's on this server are not ours
            keys = self._standing().execute(
                text("SELECT objid::bigint FROM pg_locks WHERE locktype = 'advisory' AND granted "
                     "AND classid::bigint = :scope AND objsubid = 2 "
                     "AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"),
                {"scope": scope}).scalars().all()
        except Exception:
            self._drop_candidate()  # the next leader check says whether this server still leads
            raise
        return {name for key in keys for name in by_key.get(int(key), ())}

    def close(self) -> None:
        if self._leading and self._candidate is not None:
            self._unlock(self._candidate, LEADER, 0)
        self._drop_candidate()
        self.engine.dispose()


def coordination_for(url: str) -> Coordination:
    return PostgresCoordination(url) if url.startswith("postgresql") else LocalCoordination()


def lock_migrations(connection: Connection) -> None:
    """Inside the migration's transaction: one server migrates, the others wait, then find nothing to do."""
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(CAST(:scope AS integer), 0)"), {"scope": MIGRATION})
