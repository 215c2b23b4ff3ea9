"""Credentials: names and write times only; values go in, never out."""

from __future__ import annotations

from ..services.paging import check_fields
from .base import BaseHandler


class CredentialsHandler(BaseHandler):
    async def get(self) -> None:
        self.send(await self.platform.credentials.list(self.caller, self.get_query_argument("user", None)))


class CredentialHandler(BaseHandler):
    async def put(self, key: str) -> None:
        body = self.json_body()
        check_fields(body, {"value"})
        user = self.get_query_argument("user", None)
        self.send(await self.platform.credentials.put(self.caller, key, body.get("value"), user))

    async def delete(self, key: str) -> None:
        await self.platform.credentials.delete(self.caller, key, self.get_query_argument("user", None))
        self.set_status(204)
        self.finish()
