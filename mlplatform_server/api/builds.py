"""Containerize a model version: POST builds and pushes its image; GET shows the build context
(the generated Dockerfile and the files) without building."""

from __future__ import annotations

from ..services.builds import BuildRequest
from .base import BaseHandler


class BuildHandler(BaseHandler):
    def get(self, name: str, version: str) -> None:
        ctx = self.platform.builds.context(
            self.caller, name, version,
            environment=self.get_query_argument("environment", None),
            context_dir=self.get_query_argument("context_dir", None),
        )
        self.send({
            "model": ctx.model,
            "version": ctx.version,
            "base_image": ctx.env_image,
            "dockerfile": ctx.dockerfile(),
            "files": sorted(ctx.files),
            "size": ctx.size,
            "builder": self.platform.builds.auto_builder(ctx),
        })

    async def post(self, name: str, version: str) -> None:
        req = BuildRequest.from_json(self.json_body())
        result = await self.platform.builds.build(
            self.caller, name, version, environment=req.environment, builder=req.builder, context_dir=req.context_dir)
        self.send(result, 201)
