"""Deployments: serve a trained run at /invocations."""

from __future__ import annotations

from ..services.deployments import DeployRequest, ScaleRequest
from ..services.paging import check_fields
from .base import BaseHandler


class DeploymentsHandler(BaseHandler):
    def get(self) -> None:
        page = self.platform.deployments.list(self.caller, self.int_argument("limit"), self.int_argument("offset", 0))
        self.send(page.to_json())

    async def post(self) -> None:
        request = DeployRequest.from_json(self.json_body())
        self.send(await self.platform.deployments.deploy(self.caller, request), 201)


class DeploymentHandler(BaseHandler):
    def get(self, name: str) -> None:
        self.send(self.platform.deployments.get(self.caller, name))

    async def delete(self, name: str) -> None:
        await self.platform.deployments.delete(self.caller, name)
        self.set_status(204)
        self.finish()


class RevisionsHandler(BaseHandler):
    def get(self, name: str) -> None:
        self.send(self.platform.deployments.revisions(self.caller, name))


class RollbackHandler(BaseHandler):
    async def post(self, name: str) -> None:
        body = self.json_body()
        check_fields(body, {"revision"})
        self.send(await self.platform.deployments.rollback(self.caller, name, body.get("revision")))


class ScaleHandler(BaseHandler):
    async def post(self, name: str) -> None:
        request = ScaleRequest.from_json(self.json_body())
        self.send(await self.platform.deployments.scale(self.caller, name, request))
