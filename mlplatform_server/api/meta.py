"""Health, identity, profiles, users and tokens."""

from __future__ import annotations

from .. import __version__
from .base import BaseHandler
from .openapi import openapi_document


class HealthHandler(BaseHandler):
    public = True

    def get(self) -> None:
        # leader: this server runs the background loop (one of the servers sharing a database does)
        self.send({"status": "ok", "version": __version__, "backend": self.platform.backend.name,
                   "leader": self.platform.leading})


class OpenAPIHandler(BaseHandler):
    public = True

    def get(self) -> None:
        self.send(openapi_document())


class WhoAmIHandler(BaseHandler):
    def get(self) -> None:
        self.send({"name": self.caller.name, "admin": self.caller.admin, "run_id": self.caller.run_id})


class ProfilesHandler(BaseHandler):
    def get(self) -> None:
        self.caller.require_user()
        self.send(self.platform.config.to_json())


class UsersHandler(BaseHandler):
    def post(self) -> None:
        body = self.json_body()
        self.send(self.platform.auth.create_user(self.caller, body.get("name"), bool(body.get("admin"))), 201)


class TokensHandler(BaseHandler):
    def post(self, user: str) -> None:
        body = self.json_body()
        self.send(self.platform.auth.create_token(self.caller, user, str(body.get("note", ""))), 201)
