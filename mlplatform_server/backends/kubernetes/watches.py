"""What the kubernetes backend knows of the cluster without asking: one shared list-and-watch
(:class:`.cache.Informer`) per (kind, namespace) — Jobs, Pods, Deployments carrying the platform's
label and every Warning Event — started on first use, and which runs' Jobs changed since the
reconcile loop last asked (:meth:`ClusterView.changed_refs`). Reads fall back to the API server
while a watch is not synced (before its first LIST, after a broken watch) or has not seen an object
yet.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from typing import Any

from . import manifests as mf
from .cache import IndexKey, Informer, label_index
from .client import ApiError, KubeClient

log = logging.getLogger(__name__)

_KINDS: dict[str, tuple[str, IndexKey | None]] = {
    "Job": ("batch/v1", None),
    "Pod": ("v1", label_index(mf.JOB_NAME_LABEL)),
    "Deployment": ("apps/v1", None),
}


def _involved_object(event: dict[str, Any]) -> str | None:
    obj = event.get("involvedObject") or {}
    return f"{obj.get('kind')}/{obj.get('name')}" if obj.get("name") else None


def _by_creation(objects: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(objects, key=lambda o: o["metadata"].get("creationTimestamp") or "")


class ClusterView:
    """``namespace``: the one namespace (None: one per user, each watched from its first use).
    ``ref``: the reference of an object (namespace, name) as the backend stores it. ``enabled``
    False: no watches, every read goes to the API server."""

    def __init__(self, client: KubeClient, namespace: str | None, ref: Callable[[str, str], str],
                 enabled: bool = True) -> None:
        self.client = client
        self.namespace = namespace
        self._ref = ref
        self.enabled = enabled
        self.watches: dict[str, dict[str, Informer]] = {}  # namespace → kind → its informer
        self._changed_jobs: set[str] = set()
        self._all_changed = True

    def informers_of(self, namespace: str | None = None) -> dict[str, Informer]:
        return self.watches.setdefault(namespace or self.namespace or "", {})

    def informer(self, kind: str, namespace: str | None = None) -> Informer | None:
        """The synced watch cache of ``kind`` (Job, Pod, Deployment, Event) in ``namespace``
        (default the one), started on first use; None while it is not synced."""
        if not self.enabled:
            return None
        namespace = namespace or self.namespace
        assert namespace, "a namespace is needed with one namespace per user"
        informers = self.watches.setdefault(namespace, {})
        informer = informers.get(kind)
        if informer is None:
            on_change = functools.partial(self._note_change, namespace=namespace)
            if kind == "Event":  # not labelled by the platform: every Warning in the namespace
                informer = Informer(self.client, "v1", "Event", namespace, None, field_selector="type=Warning",
                                    index=_involved_object, on_change=on_change)
            else:
                api_version, index = _KINDS[kind]
                selector = ",".join(f"{k}={v}" for k, v in mf.MANAGED_BY.items())
                informer = Informer(self.client, api_version, kind, namespace, selector, index=index,
                                    on_change=on_change)
            informers[kind] = informer
            if self.namespace is None and kind in ("Job", "Pod") and {"Job", "Pod"} - informers.keys():
                self.informer("Pod" if kind == "Job" else "Job", namespace)  # changed_refs needs both
        informer.start()
        return informer if informer.synced else None

    # -- what changed ----------------------------------------------------------------------
    def _note_change(self, obj: dict[str, Any] | None, namespace: str | None = None) -> None:
        """Remember which run's Job a watched change concerns (see :meth:`changed_refs`)."""
        if obj is None:
            self._all_changed = True
            return
        namespace = namespace or self.namespace or ""
        kind = obj.get("kind")
        meta = obj.get("metadata") or {}
        if kind == "Event":
            involved = obj.get("involvedObject") or {}
            if involved.get("kind") == "Job":
                self._changed_jobs.add(self._ref(namespace, involved.get("name") or ""))
            elif involved.get("kind") == "Pod" and (pods := self.watches.get(namespace, {}).get("Pod")) is not None:
                pod = pods.get(involved.get("name") or "")
                if pod is not None:
                    self._note_change(pod, namespace)
        elif kind == "Job":
            name = meta.get("name") or ""
            jobs = self.watches.get(namespace, {}).get("Job")
            if not obj.get("status") and jobs is not None and name in jobs:
                # Created and not yet touched by the Job controller: the run's state is what its
                # submit recorded (Backend.initial_reason); a deleted Job is not in the copy any more.
                return
            self._changed_jobs.add(self._ref(namespace, name))
        elif job := (meta.get("labels") or {}).get(mf.JOB_NAME_LABEL):
            self._changed_jobs.add(self._ref(namespace, job))

    def changed_refs(self) -> set[str] | None:
        """See ``Backend.changed_refs``: None until the Job and Pod watches of every namespace
        with runs are synced, and once after any of them was (re)built from a LIST."""
        if self.namespace is not None:
            watched = [self.informers_of()]
        else:  # every user namespace with runs watched so far (a new one is watched from its first submit)
            watched = [w for w in self.watches.values() if "Job" in w or "Pod" in w]
        if self._all_changed or not watched or any(
                w.get("Job") is None or w.get("Pod") is None or not (w["Job"].synced and w["Pod"].synced)
                for w in watched):
            self._all_changed = False
            self._changed_jobs.clear()
            return None
        changed, self._changed_jobs = self._changed_jobs, set()
        changed.discard("")
        changed.discard(self._ref("", ""))
        return {ref for ref in changed if not ref.endswith("/")}

    # -- reads -----------------------------------------------------------------------------
    async def get(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        namespace = namespace or self.namespace
        informer = self.informer(kind, namespace)
        obj = informer.get(name) if informer is not None else None
        if obj is None:  # not synced, or not seen by the watch yet (just created or deleted)
            obj = await self.client.get_or_none(api_version, kind, namespace, name)
        return obj

    async def pods(self, labels: dict[str, str], namespace: str | None = None) -> list[dict[str, Any]]:
        """The pods carrying ``labels``, oldest first (a Job's by the informer's index)."""
        namespace = namespace or self.namespace
        informer = self.informer("Pod", namespace)
        if informer is not None:
            job = labels.get(mf.JOB_NAME_LABEL)
            pods = informer.indexed(job) if job and len(labels) == 1 else informer.select(labels)
        else:
            selector = ",".join(f"{k}={v}" for k, v in labels.items())
            pods = await self.client.list("v1", "Pod", namespace, label_selector=selector)
        return _by_creation(pods)

    async def listed_pods(self, job: str, namespace: str | None = None) -> list[dict[str, Any]]:
        """A Job's pods straight from the API server (for logs: the newest pod, not a cached one)."""
        pods = await self.client.list("v1", "Pod", namespace or self.namespace,
                                      label_selector=f"{mf.JOB_NAME_LABEL}={job}")
        return _by_creation(pods)

    async def warning(self, kind: str, name: str, namespace: str | None = None) -> str | None:
        """The latest Warning event about an object, as "Reason: message"; None if none (or not readable)."""
        namespace = namespace or self.namespace
        informer = self.informer("Event", namespace)
        if informer is not None:
            events = informer.indexed(f"{kind}/{name}")
        else:
            try:
                events = await self.client.list("v1", "Event", namespace, field_selector=(
                    f"involvedObject.kind={kind},involvedObject.name={name},type=Warning"))
            except ApiError as exc:
                log.debug("events of %s %s: %s", kind, name, exc)
                return None
        if not events:
            return None
        latest = max(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime")
                     or e["metadata"].get("creationTimestamp") or "")
        return f"{latest.get('reason') or 'Warning'}: {latest.get('message') or ''}".rstrip(": ")

    async def stop(self) -> None:
        await asyncio.gather(*(informer.stop() for watched in self.watches.values() for informer in watched.values()))
