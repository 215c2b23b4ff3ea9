"""One shared list-and-watch per kind (an "informer"): an in-memory copy of the platform's objects.

``Informer.run`` LISTs the objects of one kind in the namespace that carry the platform's label,
then WATCHes from the list's resourceVersion and applies every event to the copy. A watch that the
server ends normally is resumed from the last resourceVersion seen (bookmarks keep it fresh); an
expired resourceVersion (``410 Gone``, as an answer or as an ERROR event) or a broken connection
starts over from a fresh LIST. While it is not synced (before the first LIST, after an error) the
backend reads the API server directly instead.

The copy keeps each object as its JSON (bytes) and its labels, not as the parsed tree of dicts and
lists: a Pod is ≈ 30 containers, and Python's cyclic garbage collector walks every long-lived
container again and again. Kept parsed, a namespace's few thousand Jobs and Pods made each full
collection cost tenths of a second while serving, and the server's CPU per run grew with every
run the namespace kept (2.1 → 2.8 ms per run over four 1 000-run phases of the submit benchmark).
Bytes are not walked, and take about a quarter of the memory; a read parses what it asks for (an
object of a few KB: ≈ 10 µs), and each read hands out a fresh dict the caller may change.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import orjson

from .client import ApiError, KubeClient

log = logging.getLogger(__name__)


IndexKey = Callable[[dict[str, Any]], str | None]


def label_index(label: str) -> IndexKey:
    """Index objects by the value of one label (e.g. pods by their Job's name)."""
    return lambda obj: ((obj.get("metadata") or {}).get("labels") or {}).get(label)


class Informer:
    """``index``: an optional key function; :meth:`indexed` then finds the objects with one key
    without scanning the whole copy (a status read per run stays O(1) with thousands of runs).
    ``on_change``: told of every object that changed (None: everything may have, after a LIST)."""

    def __init__(self, client: KubeClient, api_version: str, kind: str, namespace: str, label_selector: str | None,
                 *, field_selector: str | None = None, index: IndexKey | None = None,
                 on_change: Callable[[dict[str, Any] | None], None] | None = None,
                 watch_timeout: int = 300, retry_delay: float = 1.0, max_retry_delay: float = 30.0) -> None:
        self.client = client
        self.api_version = api_version
        self.kind = kind
        self.namespace = namespace
        self.label_selector = label_selector
        self.field_selector = field_selector
        self._index_key = index
        self._index: dict[str, set[str]] = defaultdict(set)
        self._on_change = on_change  # called with each changed object, or None after a (re)list
        self.watch_timeout = watch_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self._json: dict[str, bytes] = {}  # name → the object as JSON, without managedFields
        self._labels: dict[str, dict[str, str]] = {}  # name → its labels (strings only: not walked by the gc)
        self._keys: dict[str, str] = {}  # name → its index key
        self.resource_version = ""
        self.synced = False
        self.lists = 0  # how many times the copy was (re)built from a LIST
        self._task: asyncio.Task | None = None
        self._changed = asyncio.Event()

    # -- reading -------------------------------------------------------------
    def __contains__(self, name: object) -> bool:
        return name in self._json

    def get(self, name: str) -> dict[str, Any] | None:
        raw = self._json.get(name)
        return orjson.loads(raw) if raw is not None else None

    def indexed(self, key: str) -> list[dict[str, Any]]:
        """The cached objects whose index key is ``key`` (needs ``index``)."""
        return [orjson.loads(self._json[n]) for n in self._index.get(key, ()) if n in self._json]

    def select(self, labels: dict[str, str], *, having: str | None = None) -> list[dict[str, Any]]:
        """The cached objects whose labels include all of ``labels`` (and the label ``having``,
        whatever its value); only those are parsed."""
        return [orjson.loads(self._json[name]) for name, own in self._labels.items()
                if labels.items() <= own.items() and (having is None or having in own)]

    async def wait_for(self, predicate, timeout: float) -> bool:
        """Wait until ``predicate(self)`` is true (checked after every change); False on timeout."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while not predicate(self):
            self._changed.clear()
            left = deadline - loop.time()
            if left <= 0:
                return False
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                return bool(predicate(self))
        return True

    # -- running -------------------------------------------------------------
    def start(self, resume_from: str | None = None) -> None:
        """Run in the background. ``resume_from``: a resourceVersion to watch from instead of
        listing first (the state as of that version is assumed known)."""
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self.run(resume_from), name=f"watch {self.kind}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
            self._task = None
        self.synced = False

    async def relist(self) -> None:
        items, version = await self.client.list_with_version(self.api_version, self.kind, self.namespace,
                                                             label_selector=self.label_selector,
                                                             field_selector=self.field_selector)
        self._forget_all()
        for obj in items:
            self._put(obj)
        self.resource_version = version
        self.lists += 1
        self.synced = True
        if self._on_change is not None:
            self._on_change(None)
        self._notify()

    async def run(self, resume_from: str | None = None) -> None:
        must_list = not resume_from
        failures = 0  # consecutive: the delay before listing again doubles, up to max_retry_delay
        if resume_from:
            self.resource_version = resume_from
        while True:
            try:
                if must_list:
                    await self.relist()
                    must_list = False
                    failures = 0
                began = asyncio.get_running_loop().time()
                async for event in self.client.watch(self.api_version, self.kind, self.namespace,
                                                     resource_version=self.resource_version,
                                                     label_selector=self.label_selector,
                                                     field_selector=self.field_selector,
                                                     timeout_seconds=self.watch_timeout):
                    self.apply(event)
                # The server closed the watch (timeoutSeconds): resume from the last version,
                # not in a tight loop if it keeps closing at once.
                if asyncio.get_running_loop().time() - began < 1.0:
                    await asyncio.sleep(self.retry_delay)
            except asyncio.CancelledError:
                raise
            except ApiError as exc:
                self.synced = False
                must_list = True
                if exc.status == 410:
                    log.info("watch of %s expired (%s): listing again", self.kind, exc.message)
                    continue
                delay = min(self.retry_delay * 2**failures, self.max_retry_delay)
                failures += 1
                log.warning("watch of %s failed: %s; listing again in %.1fs", self.kind, exc, delay)
                await asyncio.sleep(delay)
            except Exception as exc:  # a broken connection, a garbled line
                self.synced = False
                must_list = True
                delay = min(self.retry_delay * 2**failures, self.max_retry_delay)
                failures += 1
                log.warning("watch of %s broke: %s: %s; listing again in %.1fs", self.kind,
                            exc.__class__.__name__, exc, delay)
                await asyncio.sleep(delay)

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        meta = obj.get("metadata") or {}
        if meta.get("resourceVersion"):
            self.resource_version = meta["resourceVersion"]
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            if kind == "DELETED":
                self._drop(meta.get("name"))
            else:
                self._put(obj)
            if self._on_change is not None:
                self._on_change(obj)
        self._notify()

    def _put(self, obj: dict[str, Any]) -> None:
        # Who set which field (managedFields) is ≈ 3/4 of a Job's or Pod's containers and half its
        # bytes, and nothing here reads it: dropped before the object is kept (as controller-runtime's
        # TransformStripManagedFields does).
        meta = obj["metadata"]
        meta.pop("managedFields", None)
        name = meta["name"]
        self._drop(name)
        # orjson answers in a bytes object that keeps its whole write buffer (≈ 4–8 KB more than the
        # JSON, measured); kept for the object's life, an exact-size copy is what stays.
        self._json[name] = memoryview(orjson.dumps(obj)).tobytes()
        self._labels[name] = meta.get("labels") or {}  # the parsed labels alone: strings, so not gc-tracked
        if self._index_key is not None and (key := self._index_key(obj)) is not None:
            self._keys[name] = key
            self._index[key].add(name)

    def _drop(self, name: str | None) -> None:
        if not name or self._json.pop(name, None) is None:
            return
        self._labels.pop(name, None)
        key = self._keys.pop(name, None)
        names = self._index.get(key) if key is not None else None
        if names is not None:
            names.discard(name)
            if not names:
                del self._index[key]

    def _forget_all(self) -> None:
        self._json.clear()
        self._labels.clear()
        self._keys.clear()
        self._index.clear()

    def _notify(self) -> None:
        self._changed.set()
