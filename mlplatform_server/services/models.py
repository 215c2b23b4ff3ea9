"""Models and their versions: save a notebook or module as a named, versioned model."""

from __future__ import annotations

import os
import re
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection, Row
from sqlalchemy.orm import Session, contains_eager

from .. import contract
from ..errors import Conflict, Forbidden, InvalidInput, NotFound
from ..store import models as m
from ..store.db import Store
from .auth import Principal
from .paging import Page, paginate

MODEL_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
VERSION_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
MAX_SOURCE_BYTES = 5 * 1024 * 1024
VERSION_CACHE_SIZE = 256  # model versions kept loaded for submits
# resolve_for_run's one-row checks, built once (building the statement each submit cost as much as
# running it).
_VERSION_ROW = (select(m.ModelVersion.id, m.ModelVersion.image, m.Model.owner).join(m.ModelVersion.model)
                .where(m.Model.name == bindparam("model")))
_LATEST_VERSION_CHECK = _VERSION_ROW.order_by(m.ModelVersion.id.desc()).limit(1)
_VERSION_CHECK = _VERSION_ROW.where(m.ModelVersion.version == bindparam("version"))


def version_to_json(model: m.Model, version: m.ModelVersion, with_source: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "model": model.name,
        "version": version.version,
        "owner": model.owner,
        "content_hash": version.content_hash,
        "source_name": version.source_name,
        "hyperparameters": version.hyperparameters,
        "methods": version.methods,
        "warnings": version.warnings,
        "image": version.image,
        "git_commit": version.git_commit,
        "created_by": version.created_by,
        "created_at": version.created_at.isoformat(),
    }
    if with_source:
        data["module_source"] = version.module_source
    return data


def model_to_json(model: m.Model) -> dict[str, Any]:
    latest = model.versions[-1] if model.versions else None
    return {
        "name": model.name,
        "owner": model.owner,
        "created_at": model.created_at.isoformat(),
        "versions": [v.version for v in model.versions],
        "latest_version": latest.version if latest else None,
    }


class ModelService:
    def __init__(self, store: Store, data_dir: Path) -> None:
        self.store = store
        self.data_dir = Path(data_dir)
        self._written: dict[tuple[str, str, str], Path] = {}  # (model, version, content hash) → its module, checked
        self._module_paths: dict[tuple[str, str], Path] = {}
        # Versions never change but for their image (set_image): loaded ones by id, for resolve_for_run.
        self._versions: OrderedDict[int, m.ModelVersion] = OrderedDict()
        # resolve_for_run's check rows of the current transaction: the submits of one group-commit
        # batch share it, so a batch of one version asks once. The transaction is held, so no later
        # one can take its identity.
        self._checked: tuple[object | None, dict[tuple[str, str | None], Row[Any] | None]] = (None, {})

    # -- paths ---------------------------------------------------------------
    def module_path(self, model: str, version: str) -> Path:
        path = self._module_paths.get((model, version))
        if path is None:  # asked for every run's spec (submit, reconcile): pathlib's joins cost
            path = self._module_paths[(model, version)] = self.data_dir / "models" / model / version / "model.py"
            if len(self._module_paths) > VERSION_CACHE_SIZE:
                self._module_paths.pop(next(iter(self._module_paths)))
        return path

    # -- queries -------------------------------------------------------------
    def inspect(self, source: str, filename: str) -> dict[str, Any]:
        """What saving would find, without saving (for the Lab's save dialog)."""
        _check_source(source, filename)
        return contract.extract(source, filename).to_json()

    def list(self, caller: Principal, limit: int | None, offset: int) -> Page:
        caller.require_user()
        query = select(m.Model).order_by(m.Model.name)
        if not caller.admin:
            query = query.where(m.Model.owner == caller.name)
        with self.store.session() as s:
            return paginate(s, query, limit, offset, model_to_json)

    def get(self, caller: Principal, name: str) -> dict[str, Any]:
        with self.store.session() as s:
            model = self._model(s, caller, name)
            data = model_to_json(model)
            data["version_details"] = [version_to_json(model, v) for v in model.versions]
            return data

    def get_version(self, caller: Principal, name: str, version: str | None) -> dict[str, Any]:
        with self.store.session() as s:
            row = self.resolve(s, caller, name, version)
            return version_to_json(row.model, row, with_source=True)

    def resolve(self, s: Session, caller: Principal, name: str, version: str | None) -> m.ModelVersion:
        """The version `name:version` (latest when version is None), if the caller may see it.
        One query (the version joined with its model, which ``row.model`` then holds) when it exists."""
        caller.require_user()
        query = (select(m.ModelVersion).join(m.ModelVersion.model).options(contains_eager(m.ModelVersion.model))
                 .where(m.Model.name == name))
        if version is None:
            query = query.order_by(m.ModelVersion.id.desc()).limit(1)
        else:
            query = query.where(m.ModelVersion.version == version)
        row = s.execute(query).scalar_one_or_none()  # one row, not every version of the model
        if row is not None and caller.can_touch(row.model.owner):
            return row
        model = self._model(s, caller, name)  # no such model, or not the caller's: NotFound
        if not model.versions:
            raise NotFound(f"Model {name!r} has no versions")
        known = ", ".join(v.version for v in model.versions)
        raise NotFound(f"Model {name!r} has no version {version!r} (versions: {known})")

    def resolve_for_run(self, conn: Connection, caller: Principal, name: str, version: str | None) -> m.ModelVersion:
        """:meth:`resolve` for a submit, read-only, in the submit's Core transaction: a one-row query
        (the version's id and image, its model's owner) and, from the second time on, the version and
        model loaded before (detached); an ORM session only to load one or to say why not."""
        caller.require_user()
        found = self._version_check(conn, name, version)
        if found is not None and caller.can_touch(found.owner):
            cached = self._versions.get(found.id)
            if cached is not None and cached.image == found.image:
                self._versions.move_to_end(found.id)
                return cached
        with self.store.session_on(conn) as s:
            row = self.resolve(s, caller, name, version)  # NotFound says why
            s.expunge(row)  # detached: the cached copy outlives this session
            s.expunge(row.model)
        self._versions[row.id] = row
        if len(self._versions) > VERSION_CACHE_SIZE:
            self._versions.popitem(last=False)
        return row

    def _version_check(self, conn: Connection, name: str, version: str | None) -> Row[Any] | None:
        """The version's (id, image, owner) row, or None: queried once per transaction and name:version."""
        transaction = conn.get_transaction()
        if transaction is None:  # outside a transaction there is no batch to share it with
            return self._query_version(conn, name, version)
        held, checks = self._checked
        if transaction is not held:
            checks = {}
            self._checked = (transaction, checks)
        if (name, version) not in checks:
            checks[(name, version)] = self._query_version(conn, name, version)
        return checks[(name, version)]

    @staticmethod
    def _query_version(conn: Connection, name: str, version: str | None) -> Row[Any] | None:
        if version is None:
            return conn.execute(_LATEST_VERSION_CHECK, {"model": name}).first()
        return conn.execute(_VERSION_CHECK, {"model": name, "version": version}).first()

    def _model(self, s: Session, caller: Principal, name: str) -> m.Model:
        caller.require_user()
        model = s.execute(select(m.Model).where(m.Model.name == name)).scalar_one_or_none()
        if model is None or not caller.can_touch(model.owner):
            raise NotFound(f"No model named {name!r}")
        return model

    # -- save ----------------------------------------------------------------
    def save(
        self,
        caller: Principal,
        name: str,
        source: str,
        filename: str,
        version: str | None = None,
        git_commit: str | None = None,
    ) -> dict[str, Any]:
        """Extract the module and store it as `name:version`.

        Saving the same content again under no explicit version returns the
        existing latest version instead of a duplicate.
        """
        caller.require_user()
        if not isinstance(name, str) or not MODEL_NAME.match(name):
            raise InvalidInput(
                f"Invalid model name {name!r}: expected lowercase letters, digits and '-' "
                "(starting and ending with a letter or digit, at most 63 characters)"
            )
        if version is not None and (not isinstance(version, str) or not VERSION_NAME.match(version)):
            raise InvalidInput(
                f"Invalid version {version!r}: expected letters, digits, '.', '_' or '-', at most 64 characters"
            )
        _check_source(source, filename)
        info = contract.extract(source, filename)  # raises ContractError before anything is written

        with self.store.session() as s:
            model = s.execute(select(m.Model).where(m.Model.name == name)).scalar_one_or_none()
            if model is None:
                model = m.Model(name=name, owner=caller.name)
                s.add(model)
                s.flush()
            elif not caller.can_touch(model.owner):
                raise Forbidden(f"Model name {name!r} belongs to another user; choose another name")
            existing = {v.version: v for v in model.versions}
            if version is None:
                latest = model.versions[-1] if model.versions else None
                if latest is not None and latest.content_hash == info.content_hash:
                    return {**version_to_json(model, latest), "created": False}
                version = _next_version(existing)
            elif version in existing:
                row = existing[version]
                if row.content_hash == info.content_hash:
                    return {**version_to_json(model, row), "created": False}
                raise Conflict(
                    f"Model {name!r} already has a version {version!r} with different code; "
                    "choose a new version or omit --version to get the next number",
                    model=name,
                    version=version,
                )
            row = m.ModelVersion(
                model=model,
                version=version,
                content_hash=info.content_hash,
                module_source=info.module_source,
                source_name=Path(filename).name,
                hyperparameters=[h.to_json() for h in info.hyperparameters],
                methods=sorted(info.methods),
                warnings=list(info.warnings),
                git_commit=git_commit,
                created_by=caller.name,
            )
            s.add(row)
            s.flush()
            # Files first, inside the transaction: a failure here rolls the row back.
            path = self.module_path(name, version)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(info.module_source)
            (path.parent / Path(filename).name).write_text(source)
            return {**version_to_json(model, row), "created": True, "contract": info.to_json()}

    def set_image(self, caller: Principal, name: str, version: str, image: str) -> None:
        with self.store.session() as s:
            self.resolve(s, caller, name, version).image = image

    def ensure_module_file(self, version: m.ModelVersion) -> Path:
        """The module on disk for a stored version (rewritten if the data dir lost it). Versions are
        immutable: the file's content is compared once, later submits only check that it is there."""
        key = (version.model.name, version.version, version.content_hash)
        known = self._written.get(key)
        if known is not None and os.path.exists(known):
            return known
        path = self.module_path(version.model.name, version.version)
        if not path.exists() or path.read_text() != version.module_source:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(version.module_source)
        self._written[key] = path
        return path


@lru_cache(maxsize=256)
def stored_contract(module_source: str) -> contract.ModelInfo:
    """The contract of a stored version's module (immutable, so parsed once per process)."""
    return contract.extract(module_source, "model.py")


def _check_source(source: Any, filename: Any) -> None:
    if not isinstance(source, str) or not source.strip():
        raise InvalidInput("'source' must be the non-empty text of a notebook (.ipynb) or Python module (.py)")
    if not isinstance(filename, str) or not filename.endswith((".ipynb", ".py")):
        raise InvalidInput(f"'filename' must end with .ipynb or .py, got {filename!r}")
    if len(source.encode()) > MAX_SOURCE_BYTES:
        raise InvalidInput(f"The source is larger than {MAX_SOURCE_BYTES // (1024 * 1024)} MiB")


def _next_version(existing: dict[str, m.ModelVersion]) -> str:
    numbers = [int(v) for v in existing if v.isdigit()]
    return str(max(numbers, default=0) + 1)

