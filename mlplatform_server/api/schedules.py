"""Schedules: batch prediction on a cron schedule; every firing is a recorded run."""

from __future__ import annotations

from ..services.schedules import ScheduleRequest
from .base import BaseHandler


class SchedulesHandler(BaseHandler):
    def get(self) -> None:
        page = self.platform.schedules.list(self.caller, self.int_argument("limit"), self.int_argument("offset", 0))
        self.send(page.to_json())

    async def post(self) -> None:
        request = ScheduleRequest.from_json(self.json_body())
        self.send(await self.platform.schedules.create(self.caller, request), 201)


class ScheduleHandler(BaseHandler):
    def get(self, name: str) -> None:
        self.send(self.platform.schedules.get(self.caller, name))

    async def delete(self, name: str) -> None:
        await self.platform.schedules.delete(self.caller, name)
        self.set_status(204)
        self.finish()


class SuspendHandler(BaseHandler):
    async def post(self, name: str) -> None:
        self.send(await self.platform.schedules.set_suspended(self.caller, name, True))


class ResumeHandler(BaseHandler):
    async def post(self, name: str) -> None:
        self.send(await self.platform.schedules.set_suspended(self.caller, name, False))
