"""Users' credentials (GitHub token, data-source passwords): written and deleted through the API,
given to the user's runs and deployments as environment variables, never read back.

Where values live is the backend's business (backends/base.py): Kubernetes keeps one Secret per
user, mounted with envFrom; the process and docker backends keep them in the platform database,
encrypted (store/credentials.py). Users touch only their own; an admin may name another user.
Neither values nor their lengths are ever logged or answered; only key names and write times.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from ..backends.base import Backend
from ..errors import Forbidden, InvalidInput, NotFound
from ..store import models as m
from ..store.db import Store
from .auth import Principal

log = logging.getLogger("mlplatform.credentials")

KEY_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
MAX_KEY_LENGTH = 128
MAX_VALUE_BYTES = 16 * 1024  # a token, a password, a service-account JSON key
MAX_PER_USER = 64  # keeps a user's Secret well under Kubernetes' 1 MiB
RESERVED_PREFIX = "MLP_"  # the platform's own variables


def check_key(key: Any) -> str:
    """A credential's name: what the run sees as an environment variable."""
    if not isinstance(key, str) or not KEY_PATTERN.fullmatch(key) or len(key) > MAX_KEY_LENGTH:
        shown = repr(key) if not isinstance(key, str) or len(key) <= 140 else repr(key[:140] + "...")
        raise InvalidInput(
            f"Invalid credential name {shown}: expected an environment variable name (a letter or '_', then "
            f"letters, digits or '_'), at most {MAX_KEY_LENGTH} characters, e.g. GITHUB_TOKEN")
    if key.upper().startswith(RESERVED_PREFIX):
        raise InvalidInput(f"Invalid credential name {key!r}: names starting with {RESERVED_PREFIX} are reserved "
                           "for the platform's own variables")
    return key


def check_value(value: Any, key: str) -> str:
    """A non-empty string of at most MAX_VALUE_BYTES (UTF-8) without NUL. The message never shows it."""
    if not isinstance(value, str):
        raise InvalidInput(f"Credential {key}: 'value' must be a string, got {_type_name(value)}")
    if not value:
        raise InvalidInput(f"Credential {key}: 'value' must not be empty (delete the credential instead)")
    if "\x00" in value:
        raise InvalidInput(f"Credential {key}: 'value' must not contain a NUL character (environment variables "
                           "cannot hold one)")
    if len(value.encode()) > MAX_VALUE_BYTES:
        raise InvalidInput(f"Credential {key}: 'value' is larger than {MAX_VALUE_BYTES} bytes")
    return value


def _type_name(value: Any) -> str:
    return "null" if value is None else {bool: "a boolean", int: "a number", float: "a number", list: "a list",
                                         dict: "an object"}.get(type(value), type(value).__name__)


class CredentialService:
    def __init__(self, store: Store, backend: Backend) -> None:
        self.store = store
        self.backend = backend

    def owner(self, caller: Principal, user: str | None) -> str:
        """Whose credentials: the caller's own, or (admins only) ``user``'s, who must exist."""
        caller.require_user()
        owner = caller.name if user in (None, "") else user
        if not caller.can_touch(owner):
            raise Forbidden("Only an admin can manage another user's credentials")
        with self.store.session() as s:
            if s.get(m.User, owner) is None:
                raise NotFound(f"No user named {owner!r}")
        return owner

    async def list(self, caller: Principal, user: str | None = None) -> dict[str, Any]:
        owner = self.owner(caller, user)
        keys = await self.backend.credential_keys(owner)
        return {"user": owner, "items": [{"key": k, "updated_at": m.iso(t)} for k, t in sorted(keys.items())]}

    async def put(self, caller: Principal, key: Any, value: Any, user: str | None = None) -> dict[str, Any]:
        owner = self.owner(caller, user)
        key = check_key(key)
        value = check_value(value, key)
        existing = await self.backend.credential_keys(owner)
        if key not in existing and len(existing) >= MAX_PER_USER:
            raise InvalidInput(f"{owner} already has {len(existing)} credentials, the most there may be "
                               f"({MAX_PER_USER}); delete one first")
        updated = await self.backend.put_credential(owner, key, value)
        log.info("credential %s of %s %s by %s", key, owner, "replaced" if key in existing else "set", caller.name)
        return {"user": owner, "key": key, "updated_at": m.iso(updated), "created": key not in existing}

    async def delete(self, caller: Principal, key: Any, user: str | None = None) -> None:
        owner = self.owner(caller, user)
        key = check_key(key)
        if not await self.backend.delete_credential(owner, key):
            raise NotFound(f"{owner} has no credential named {key!r}")
        log.info("credential %s of %s deleted by %s", key, owner, caller.name)
