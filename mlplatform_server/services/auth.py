"""Who is calling: admin token, user API tokens, run-scoped tokens, and workload tokens.

Tokens are random secrets shown once; only their SHA-256 digests are stored. A backend that gives
a run's pods their own identity (Kubernetes: a projected service-account token checked with a
TokenReview) answers for the tokens the platform does not know itself.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import bindparam, select
from sqlalchemy.exc import IntegrityError

from ..errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ..store import models as m
from ..store.db import Store

# The user an API token belongs to (one row), built once: asked on every API call.
_USER_OF_TOKEN = (select(m.User.name, m.User.admin).join(m.ApiToken, m.ApiToken.user == m.User.name)
                  .where(m.ApiToken.digest == bindparam("digest")))

OwnedT = TypeVar("OwnedT")
_USER_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9._@-]{0,127}$")


@dataclass(frozen=True)
class Principal:
    name: str
    admin: bool = False
    run_id: str | None = None  # set for a run-scoped token: it may only report for that run

    def require_user(self) -> None:
        if self.run_id is not None:
            raise Forbidden("A run token may only report metrics for its own run")

    def can_touch(self, owner: str) -> bool:
        return self.run_id is None and (self.admin or self.name == owner)


def owned_by_name(s: Any, caller: Principal, table: type[OwnedT], name: str, noun: str) -> OwnedT:
    """The row of ``table`` (a table with ``name`` and ``owner``) named ``name``, if ``caller`` may
    touch it; otherwise NotFound, so another user's things do not even show that they exist."""
    caller.require_user()
    row = s.execute(select(table).where(table.name == name)).scalar_one_or_none()  # type: ignore[attr-defined]
    if row is None or not caller.can_touch(row.owner):  # type: ignore[attr-defined]
        raise NotFound(f"No {noun} named {name!r}")
    return row


def new_token() -> str:
    return secrets.token_urlsafe(32)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


WorkloadAuthenticator = Callable[[str], Awaitable["tuple[str, str] | None"]]
# JupyterHub service mode (hub/service_auth.py): a hub token → (user name, hub admin) or None.
HubAuthenticator = Callable[[str], Awaitable["tuple[str, bool] | None"]]


class AuthService:
    """``workload``: for a token the platform did not issue, the (backend, reference) of the run
    whose workload presented it, or None (see ``Backend.authenticate_workload``).
    ``hub``: for such a token, the JupyterHub user it belongs to (created on first sight; hub
    admins are platform admins), or None."""

    def __init__(self, store: Store, admin_token: str, admin_name: str = "admin",
                 workload: WorkloadAuthenticator | None = None, hub: HubAuthenticator | None = None) -> None:
        self.store = store
        self._admin_token = admin_token
        self.admin_name = admin_name
        self._workload = workload
        self._hub = hub
        self._hub_users: dict[str, bool] = {}  # hub users already written to the store, and as what
        self.ensure_user(admin_name, admin=True)

    async def authenticate_request(self, token: str | None) -> Principal:
        """:meth:`authenticate`; for a token the platform did not issue, the hub's user (as a hub
        service), then the backend's workload identity."""
        try:
            return self.authenticate(token)
        except Unauthorized:
            if not token:
                raise
        for resolve in (self._hub_principal, self._workload_principal):
            principal = await resolve(token)
            if principal is not None:
                return principal
        raise Unauthorized("Invalid API token")

    async def _hub_principal(self, token: str) -> Principal | None:
        hub_user = await self._hub(token) if self._hub is not None else None
        if hub_user is None:
            return None
        name, admin = hub_user
        if name == self.admin_name:  # would take over (or demote) the built-in admin account
            raise Forbidden(f"Hub user {name!r} has the name of the platform's built-in admin "
                            "account; use another hub user name")
        if self._hub_users.get(name) != admin:  # first sight, or the admin flag changed
            self.ensure_user(name, admin=admin)
            self._hub_users[name] = admin
        return Principal(name, admin=admin)

    async def _workload_principal(self, token: str) -> Principal | None:
        found = await self._workload(token) if self._workload is not None else None
        if found is None:
            return None
        backend, ref = found
        return self._run_principal(m.Run.backend == backend, m.Run.backend_ref == ref,
                                   m.Run.finished_at.is_(None))

    def _run_principal(self, *where: Any) -> Principal | None:
        """The run-scoped principal of the run matching ``where``, if any."""
        with self.store.transaction() as connection:
            run = connection.execute(select(m.Run.id, m.Run.launched_by).where(*where)).first()
        return Principal(run.launched_by, run_id=run.id) if run is not None else None

    def authenticate(self, token: str | None) -> Principal:
        if not token:
            raise Unauthorized("Missing API token: send 'Authorization: Bearer <token>' (MLP_TOKEN)")
        if hmac.compare_digest(token.encode(), self._admin_token.encode()):
            return Principal(self.admin_name, admin=True)
        hashed = digest(token)
        with self.store.transaction() as connection:  # every API call: Core, not an ORM session
            row = connection.execute(_USER_OF_TOKEN, {"digest": hashed}).first()
        if row is not None:
            return Principal(row.name, admin=row.admin)
        run = self._run_principal(m.Run.token_digest == hashed)
        if run is not None:
            return run
        raise Unauthorized("Invalid API token")

    def create_user(self, caller: Principal, name: str, admin: bool = False) -> dict:
        self._require_admin(caller)
        if not isinstance(name, str) or not _USER_NAME.match(name):
            raise InvalidInput(
                f"Invalid user name {name!r}: expected letters, digits, '.', '_', '@' or '-', at most 128 characters"
            )
        with self.store.session() as s:
            if s.get(m.User, name) is not None:
                raise Conflict(f"User {name!r} already exists")
            s.add(m.User(name=name, admin=bool(admin)))
        return {"name": name, "admin": bool(admin)}

    def ensure_user(self, name: str, admin: bool = False) -> None:
        """Create a user seen through an external identity (e.g. the hub) on first sight."""
        for attempt in range(2):
            try:
                with self.store.session() as s:
                    user = s.get(m.User, name)
                    if user is None:
                        s.add(m.User(name=name, admin=admin))
                    elif user.admin != admin:
                        user.admin = admin
                return
            except IntegrityError:  # another server wrote it first: the second try finds its row
                if attempt:
                    raise

    def create_token(self, caller: Principal, user: str, note: str = "") -> dict:
        caller.require_user()
        if not (caller.admin or caller.name == user):
            raise Forbidden("Only an admin can create tokens for another user")
        token = new_token()
        with self.store.session() as s:
            if s.get(m.User, user) is None:
                raise NotFound(f"No user named {user!r}")
            s.add(m.ApiToken(user=user, digest=digest(token), note=str(note)[:256]))
        return {"user": user, "token": token, "note": note}

    def _require_admin(self, caller: Principal) -> None:
        if not caller.admin or caller.run_id is not None:
            raise Forbidden("Only an admin can do this")
