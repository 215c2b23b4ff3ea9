"""Database engine, sessions and migrations (SQLite by default, PostgreSQL by URL)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from .coordination import Coordination, coordination_for, lock_migrations

MIGRATIONS = Path(__file__).with_name("migrations")


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{Path(data_dir).resolve() / 'mlplatform.db'}"


def _json_text(value: object) -> str:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


# JSON columns (a run's hyperparameters, hardware, environment...) through orjson: several times
# faster than the json module, on every run recorded and every run the reconcile loop reads.
_JSON = {"json_serializer": _json_text, "json_deserializer": orjson.loads}


def make_engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30}, **_JSON)

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # pragma: no cover - trivial
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL stays consistent and survives a crash of the server; only a power
            # loss can drop the last commits (the reconcile loop re-reads runs from the backend).
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_engine(url, pool_pre_ping=True, **_JSON)


def alembic_config(url: str) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the schema to the newest revision."""
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    with engine.begin() as connection:
        lock_migrations(connection)  # several servers starting at once: one migrates
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")


class Store:
    """Owns the engine; hands out transactional sessions."""

    def __init__(self, url: str, migrate: bool = True) -> None:
        self.url = url
        self.engine = make_engine(url)
        if migrate:
            upgrade(self.engine)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        self.coordination: Coordination = coordination_for(url)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One unit of work: committed on success, rolled back on any error."""
        with self._sessions() as session:
            with session.begin():
                yield session

    @contextmanager
    def transaction(self) -> Iterator[Connection]:
        """One transaction on a Core connection: committed on success, rolled back on any error.
        For hot paths (a run's submit) where the ORM's unit of work is not needed and its session
        costs more than the statements; :meth:`session_on` gives an ORM session inside it."""
        with self.engine.begin() as connection:
            yield connection

    def session_on(self, connection: Connection) -> Session:
        """An ORM session in ``connection``'s transaction (it commits or rolls back with it)."""
        return Session(bind=connection, expire_on_commit=False)

    def close(self) -> None:
        self.coordination.close()
        self.engine.dispose()
