"""A run's TensorBoard files copied through the platform API into a private per-user cache.

When the notebook server cannot see the platform's data volume (Kubernetes: notebook pods mount
none of it), :func:`sync_run` lists the run's artifacts with the user's own token
(``GET runs/<id>/artifacts?prefix=logs/``, else every ``*tfevents*`` file) and downloads what
changed (size or mtime differ) into ``$XDG_CACHE_HOME/mlplatform/tensorboard/<run>/`` (default
``~/.cache``; folders mode 0700). A running run is synced again on each open, a finished one once.

Event files are append-only and TensorBoard keeps them open: a changed file is rewritten in place
(same inode), so the open reader goes on from where it was.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlencode

from tornado import web

from .artifact_paths import artifact_url_path, clean_relative
from .errors import InvalidInput
from .extension import ExtensionError, MLPlatformApp

DOWNLOAD_TIMEOUT = 600.0  # seconds for one file
_PART = ".part"


@dataclass
class RunSync:
    """What this server holds of one run: its log directory once synced, and whether that is final."""

    logdir: Path | None = None
    complete: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path("~/.cache").expanduser())
    return Path(base) / "mlplatform" / "tensorboard"


def _private_dir(path: Path) -> Path:
    """``path`` (under :func:`cache_root`) and the cache folders above it, mode 0700."""
    root = cache_root()
    folders, current = [root.parent, root], root
    for part in path.relative_to(root).parts:
        current = current / part
        folders.append(current)
    for folder in folders:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        if folder.stat().st_mode & 0o077:
            folder.chmod(0o700)
    return path


def is_event_file(path: str) -> bool:
    return "tfevents" in PurePosixPath(path).name


async def sync_run(ext: MLPlatformApp, run: str, *, finished: bool, refresh: bool) -> Path:
    """The run's local log directory, synced when needed. ``refresh``: an open of the run's
    TensorBoard (not one of its data requests), which syncs again while the run is not ``finished``."""
    state: RunSync = ext.tensorboard_syncs.setdefault(run, RunSync())
    async with state.lock:
        if state.logdir is not None and (state.complete or not refresh):
            return state.logdir
        folder = _private_dir(cache_root() / run)
        items = await _listing(ext, run, "logs/")
        logdir = folder / "logs"
        if not items:
            items = [i for i in await _listing(ext, run, None) if is_event_file(i["path"])]
            logdir = folder
        if not items and finished:
            raise web.HTTPError(404, f"Run {run} has no TensorBoard files among its artifacts "
                                     "(artifacts/logs/ or events.out.tfevents.*)")
        wanted: set[Path] = set()
        for item in items:
            try:
                rel = clean_relative(item["path"])
            except InvalidInput:  # the platform checks this too; never write outside the cache
                ext.log.warning("mlplatform | run %s: skipped artifact %r", run, item.get("path"))
                continue
            local = folder / rel
            wanted.add(local)
            if not _same(local, item):
                await _download(ext, run, rel, local, float(item["mtime"]))
        _remove_others(folder, wanted)
        _private_dir(logdir)
        state.logdir, state.complete = logdir, finished
        return logdir


def _same(local: Path, item: dict[str, Any]) -> bool:
    try:
        st = local.stat()
    except OSError:
        return False
    return st.st_size == item["size"] and abs(st.st_mtime - float(item["mtime"])) < 1e-3


def _remove_others(folder: Path, wanted: set[Path]) -> None:
    """Files the run no longer has (and partial downloads) go; folders stay."""
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            path = Path(dirpath) / name
            if path not in wanted:
                path.unlink(missing_ok=True)


async def _listing(ext: MLPlatformApp, run: str, prefix: str | None) -> list[dict[str, Any]]:
    query = urlencode({"prefix": prefix}) if prefix else ""
    try:
        response = await ext.fetch(ext.platform_request("GET", f"runs/{run}/artifacts", query=query, timeout=60))
    except ExtensionError as exc:
        raise web.HTTPError(exc.status, exc.message) from None
    if response.code != 200:
        raise _answer_error(run, response.code, response.body)
    try:
        items = json.loads(response.body)["items"]
    except (ValueError, KeyError, TypeError):
        raise web.HTTPError(502, f"The platform's artifact list of run {run} is not what this server "
                                 "expects (is the platform older than this extension?)") from None
    return [i for i in items if isinstance(i, dict) and isinstance(i.get("path"), str)]


async def _download(ext: MLPlatformApp, run: str, rel: str, dest: Path, mtime: float) -> None:
    _private_dir(dest.parent)
    partial = dest.with_name(dest.name + _PART)
    try:
        with open(partial, "wb") as fh:
            def on_chunk(chunk: bytes) -> None:  # tornado awaits what a callback returns: not write's int
                fh.write(chunk)

            request = ext.platform_request("GET", f"runs/{run}/artifacts/{artifact_url_path(rel)}",
                                           streaming_callback=on_chunk, timeout=DOWNLOAD_TIMEOUT)
            try:
                response = await ext.fetch(request)
            except ExtensionError as exc:
                raise web.HTTPError(exc.status, exc.message) from None
        if response.code != 200:
            raise _answer_error(run, response.code, partial.read_bytes()[:4096])
        if dest.is_file():  # in place: TensorBoard holds the file open and reads on from its offset
            with open(partial, "rb") as src, open(dest, "r+b") as out:
                shutil.copyfileobj(src, out, 1024 * 1024)
                out.truncate()
        else:
            os.replace(partial, dest)
        os.utime(dest, ns=(int(mtime * 1e9),) * 2)
    finally:
        partial.unlink(missing_ok=True)


def _answer_error(run: str, code: int, body: bytes) -> web.HTTPError:
    try:
        message = json.loads(body)["message"]
    except (ValueError, KeyError, TypeError):
        message = f"the platform answered HTTP {code}"
    if code in (403, 404, 501):  # not visible; artifacts in object storage (the platform says so)
        return web.HTTPError(404 if code == 403 else code, message)
    return web.HTTPError(502, f"Run {run}'s artifacts through the platform API: {message}")
