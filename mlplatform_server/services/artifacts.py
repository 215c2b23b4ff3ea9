"""A run's artifacts through the API: list them and read one file, for the run's owner or an admin.

Artifacts live in ``<data dir>/runs/<id>/artifacts`` on every backend that keeps files on the
platform's volume (process, docker, kubernetes with ``--pvc``). With ``--artifacts-uri`` (object
storage) the platform holds no copy, so these calls answer 501.

Paths are relative POSIX paths under that folder. Anything that could leave it (``..``, an
absolute path, a symlink resolving outside) is refused with 400 before a byte is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..artifact_paths import clean_relative
from ..backends.base import Backend
from ..errors import InvalidInput, NotFound, NotSupported
from .auth import Principal
from .runs import RunService

MAX_LISTED = 10_000  # files in one listing; a run's artifacts are rarely more


class ArtifactService:
    def __init__(self, runs: RunService, backend: Backend) -> None:
        self.runs = runs
        self.backend = backend

    def folder(self, caller: Principal, run_id: str) -> Path:
        """The run's artifacts folder, once the caller may see the run (404 otherwise, as GET /runs/{id})."""
        caller.require_user()
        with self.runs.store.session() as s:
            self.runs.find(s, caller, run_id)
        if not self.backend.artifacts_on_volume:
            raise NotSupported("This platform keeps run artifacts in object storage (--artifacts-uri); the API "
                               "serves only artifacts on its data volume (--pvc). Read them from the bucket.")
        return self.runs.run_dir(run_id) / "artifacts"

    def list(self, caller: Principal, run_id: str, prefix: str | None = None) -> dict[str, Any]:
        """``{"run", "prefix", "items": [{"path", "size", "mtime"}]}`` sorted by path; ``mtime`` in
        seconds since the epoch. Symlinks leaving the folder are not listed."""
        root = self.folder(caller, run_id)
        wanted = prefix or ""
        if wanted and (wanted.startswith("/") or ".." in wanted.split("/") or "\x00" in wanted):
            raise InvalidInput(f"'prefix' {prefix!r} must be a relative path without '..'")
        items: list[dict[str, Any]] = []
        if root.is_dir():
            real_root = root.resolve()
            for dirpath, dirnames, filenames in os.walk(root):
                dirnames.sort()
                rel_dir = Path(dirpath).relative_to(root).as_posix()
                for name in sorted(filenames):
                    rel = name if rel_dir == "." else f"{rel_dir}/{name}"
                    if not rel.startswith(wanted):
                        continue
                    full = Path(dirpath) / name
                    try:
                        if not full.resolve().is_relative_to(real_root):
                            continue
                        st = full.stat()
                    except OSError:  # vanished or dangling
                        continue
                    items.append({"path": rel, "size": st.st_size, "mtime": st.st_mtime})
                    if len(items) > MAX_LISTED:
                        raise InvalidInput(f"Run {run_id} has more than {MAX_LISTED} artifact files: "
                                           "narrow the listing with ?prefix=")
        items.sort(key=lambda item: item["path"])
        return {"run": run_id, "prefix": wanted, "items": items}

    def file(self, caller: Principal, run_id: str, path: str) -> Path:
        """The file at ``path`` under the run's artifacts, resolved and checked to stay inside them."""
        root = self.folder(caller, run_id)
        rel = clean_relative(path)
        candidate = root / rel
        try:
            resolved = candidate.resolve(strict=True)
        except (OSError, RuntimeError):
            raise NotFound(f"Run {run_id} has no artifact {rel!r}") from None
        if not resolved.is_relative_to(root.resolve()):
            raise InvalidInput(f"'path' {rel!r} leads outside the run's artifacts (a symlink)")
        if not resolved.is_file():
            raise NotFound(f"Run {run_id} has no artifact file {rel!r}")
        return resolved
