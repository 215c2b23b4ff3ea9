"""Runs: submit, inspect, cancel, replicate, logs, metrics, artifacts."""

from __future__ import annotations

import os
from urllib.parse import quote

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


class ArtifactsHandler(BaseHandler):
    def get(self, run_id: str) -> None:
        self.send(self.platform.artifacts.list(self.caller, run_id, self.get_query_argument("prefix", None)))


class ArtifactFileHandler(BaseHandler):
    """The file's bytes, read and sent in chunks (artifacts may be larger than memory)."""

    CHUNK = 256 * 1024

    async def get(self, run_id: str, path: str) -> None:
        file = self.platform.artifacts.file(self.caller, run_id, path)
        with open(file, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            self.set_header("Content-Type", "application/octet-stream")
            self.set_header("Content-Length", str(size))
            self.set_header("Content-Disposition", f"attachment; filename*=UTF-8''{quote(file.name, safe='')}")
            sent = 0
            try:
                while sent < size:  # a file still growing (a running run's log) is sent as it was opened
                    chunk = fh.read(min(self.CHUNK, size - sent))
                    if not chunk:  # truncated meanwhile: end the response short rather than lie
                        self.request.connection.close()
                        return
                    sent += len(chunk)
                    self.write(chunk)
                    await self.flush()
            except StreamClosedError:
                return
        self.finish()

