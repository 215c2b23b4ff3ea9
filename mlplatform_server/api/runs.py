"""Runs: submit, inspect, cancel, replicate, logs, metrics."""

from __future__ import annotations

from tornado.iostream import StreamClosedError

from ..services.runs import RunRequest
from .base import BaseHandler


class RunsHandler(BaseHandler):
    def get(self) -> None:
        page = self.platform.runs.list(
            self.caller,
            self.int_argument("limit"),
            self.int_argument("offset", 0),
            status=self.get_query_argument("status", None),
            model=self.get_query_argument("model", None),
        )
        self.send(page.to_json())

    async def post(self) -> None:
        request = RunRequest.from_json(self.json_body())
        self.send(await self.platform.runs.submit(self.caller, request), 201)


class RunHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        self.send(self.platform.runs.get(self.caller, run_id))


class CancelHandler(BaseHandler):
    async def post(self, run_id: str) -> None:
        self.send(await self.platform.runs.cancel(self.caller, run_id))


class ReplicateHandler(BaseHandler):
    async def post(self, run_id: str) -> None:
        self.send(await self.platform.runs.replicate(self.caller, run_id), 201)


class LogsHandler(BaseHandler):
    """Plain text; with ?follow=true the response streams until the run ends."""

    async def get(self, run_id: str) -> None:
        follow = self.bool_argument("follow")
        chunks = self.platform.runs.logs(self.caller, run_id, follow=follow)
        first = True
        try:
            async for chunk in chunks:
                if first:
                    self.set_header("Content-Type", "text/plain; charset=UTF-8")
                    first = False
                self.write(chunk)
                await self.flush()
        except StreamClosedError:
            return
        finally:
            await chunks.aclose()
        if first:
            self.set_header("Content-Type", "text/plain; charset=UTF-8")
        self.finish()


class MetricsHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        name = self.get_query_argument("name", None)
        self.send({"items": self.platform.runs.list_metrics(self.caller, run_id, name)})

    def post(self, run_id: str) -> None:
        count = self.platform.runs.record_metrics(self.caller, run_id, self.json_body())
        self.send({"recorded": count}, 201)
