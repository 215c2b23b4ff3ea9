"""Models and versions."""

from __future__ import annotations

from .base import BaseHandler


class InspectHandler(BaseHandler):
    """What saving a notebook would find, without saving it."""

    def post(self) -> None:
        self.caller.require_user()
        body = self.json_body()
        self.send(self.platform.models.inspect(body.get("source"), body.get("filename")))


class ModelsHandler(BaseHandler):
    def get(self) -> None:
        page = self.platform.models.list(self.caller, self.int_argument("limit"), self.int_argument("offset", 0))
        self.send(page.to_json())

    def post(self) -> None:
        self._save(self.json_body())

    def _save(self, body: dict, name: str | None = None) -> None:
        result = self.platform.models.save(
            self.caller,
            name=name or body.get("name"),
            source=body.get("source"),
            filename=body.get("filename"),
            version=body.get("version"),
            git_commit=body.get("git_commit"),
        )
        self.send(result, 201 if result.get("created") else 200)


class ModelHandler(BaseHandler):
    def get(self, name: str) -> None:
        self.send(self.platform.models.get(self.caller, name))


class VersionsHandler(ModelsHandler):
    def get(self, name: str) -> None:  # type: ignore[override]
        self.send({"items": self.platform.models.get(self.caller, name)["version_details"]})

    def post(self, name: str) -> None:  # type: ignore[override]
        self._save(self.json_body(), name)


class VersionHandler(BaseHandler):
    def get(self, name: str, version: str) -> None:
        self.send(self.platform.models.get_version(self.caller, name, version))
