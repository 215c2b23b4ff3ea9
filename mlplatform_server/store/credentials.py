"""Users' credentials in the platform database, encrypted at rest (process and docker backends).

Each value is a Fernet token (AES-128-CBC + HMAC-SHA256) under a key kept in a file of the data
dir with mode 0600 (created on first use), so a copy of the database alone reveals no value. The
plaintext also names the user and the key, so a ciphertext moved to another row (someone with
write access to the database) is refused rather than handed to another user's run.
Values are never logged.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import stat
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken
from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite

from ..errors import BackendError
from . import models as m
from .db import Store

log = logging.getLogger("mlplatform.credentials")

KEY_FILE = "credentials.key"


def load_or_create_key(path: Path) -> bytes:
    """The Fernet key in ``path``; created (0600, atomically: never a half-written key) if missing."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".credentials-key-")  # mode 0600
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(Fernet.generate_key())
            os.link(tmp, path)  # fails if another process created it first: then use theirs
        except FileExistsError:
            pass
        finally:
            os.unlink(tmp)
        mode = path.stat().st_mode
    if stat.S_IMODE(mode) & 0o077:
        log.warning("%s was readable by others (mode %o); set to 0600", path, stat.S_IMODE(mode))
        os.chmod(path, 0o600)
    return path.read_bytes().strip()


class CredentialVault:
    """put / delete / keys / values of users' credentials (see the module docstring)."""

    def __init__(self, store: Store, key_file: Path) -> None:
        self.store = store
        self.key_file = Path(key_file)
        self._fernet: Fernet | None = None

    @property
    def fernet(self) -> Fernet:
        if self._fernet is None:
            try:
                self._fernet = Fernet(load_or_create_key(self.key_file))
            except ValueError:
                raise BackendError(f"The credentials key file {self.key_file} is not a valid Fernet key") from None
        return self._fernet

    def put(self, user: str, key: str, value: str) -> dt.datetime:
        token = self.fernet.encrypt(json.dumps({"user": user, "key": key, "value": value}).encode()).decode()
        now = m.utcnow()
        # One upsert: two writers of the same key at once both succeed (the last one wins).
        insert = postgresql.insert if self.store.engine.dialect.name == "postgresql" else sqlite.insert
        statement = insert(m.Credential).values(user=user, key=key, ciphertext=token, updated_at=now)
        statement = statement.on_conflict_do_update(index_elements=[m.Credential.user, m.Credential.key],
                                                    set_={"ciphertext": token, "updated_at": now})
        with self.store.session() as s:
            s.execute(statement)
        return now

    def delete(self, user: str, key: str) -> bool:
        with self.store.session() as s:
            return bool(s.execute(delete(m.Credential).where(m.Credential.user == user,
                                                             m.Credential.key == key)).rowcount)

    def keys(self, user: str) -> dict[str, dt.datetime | None]:
        with self.store.session() as s:
            rows = s.execute(select(m.Credential.key, m.Credential.updated_at)
                             .where(m.Credential.user == user).order_by(m.Credential.key)).all()
        return {row.key: row.updated_at for row in rows}

    def values(self, user: str) -> dict[str, str]:
        """Every credential of ``user`` in clear, for the environment of a run or deployment."""
        with self.store.session() as s:
            rows = s.execute(select(m.Credential.key, m.Credential.ciphertext)
                             .where(m.Credential.user == user)).all()
        out: dict[str, str] = {}
        for row in rows:
            try:
                data = json.loads(self.fernet.decrypt(row.ciphertext.encode()))
            except (InvalidToken, ValueError):
                data = None
            if not isinstance(data, dict) or data.get("user") != user or data.get("key") != row.key:
                raise BackendError(
                    f"The credential {row.key} of {user} cannot be decrypted with {self.key_file} (was the key "
                    f"file replaced?): set it again with `mlp credentials set {row.key}`", key=row.key)
            out[row.key] = str(data["value"])
        return out
