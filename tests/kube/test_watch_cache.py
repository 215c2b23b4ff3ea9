"""The backend's shared list-and-watch per kind (backends/kubernetes/cache.py) against the real API
server: status is answered from the cache once it is synced, the cache follows a Job to completion
and a deletion, a watch from an expired resourceVersion (a real `410 Gone`) and a cut connection both
start over from a fresh LIST.

Needs MLP_TEST_KUBECONFIG (set by `make test`); fails, never skips, without it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any
from urllib.parse import urlsplit

from kubebackend import CPU, GPU8, backend, data_dir, namespace, run_spec, wait_state  # noqa: F401 (fixtures)
from kubetest import kubeconfig, kubectl

from mlplatform_server.backends.base import RunState
from mlplatform_server.backends.kubernetes.cache import Informer
from mlplatform_server.backends.kubernetes.client import KubeClient, KubeConfig

SELECTOR = "app.kubernetes.io/managed-by=mlplatform"


def labelled_config_map(namespace: str, name: str, data: dict[str, str]) -> dict[str, Any]:
    """A ConfigMap carrying the platform's label (so SELECTOR's informer watches it)."""
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/managed-by": "mlplatform"}},
            "data": data}


def complete(job: dict[str, Any] | None) -> bool:
    return bool(job) and any(c.get("type") == "Complete" and c.get("status") == "True"
                             for c in (job.get("status") or {}).get("conditions") or [])


class Calls:
    """Counts the backend's requests to the API server."""

    def __init__(self, client: KubeClient) -> None:
        self.n = 0
        original = client.request

        async def counted(*args: Any, **kw: Any) -> Any:
            self.n += 1
            return await original(*args, **kw)

        client.request = counted


async def synced(backend, *kinds: str) -> None:
    for kind in kinds:
        backend._informer(kind)
        assert await backend.informers[kind].wait_for(lambda i: i.synced, 30), f"{kind} watch never synced"


async def test_status_comes_from_the_watch_cache(backend, data_dir):
    ok = run_spec(data_dir, hardware=CPU)
    stuck = run_spec(data_dir, hardware=GPU8)
    ok_ref, stuck_ref = await backend.submit(ok), await backend.submit(stuck)
    await synced(backend, "Job", "Pod")
    jobs = backend.informers["Job"]

    # The cache sees the Job complete (watch events, no polling).
    assert await jobs.wait_for(lambda i: complete(i.get(ok_ref)), 60), jobs.get(ok_ref)
    await wait_state(backend, stuck_ref, stuck, RunState.PENDING, reason="Insufficient nvidia.com/gpu")
    calls = Calls(backend.client)
    assert (await backend.status(ok_ref, ok)).state == RunState.SUCCEEDED
    pending = await backend.status(stuck_ref, stuck)
    assert pending.state == RunState.PENDING and "Insufficient nvidia.com/gpu" in pending.reason
    assert calls.n == 0, "status read the API server although the cache is synced"

    # Deleted outside the platform: the watch drops it, status confirms with a GET.
    kubectl("-n", backend.namespace, "delete", "job", stuck_ref, "--wait=false")
    assert await jobs.wait_for(lambda i: i.get(stuck_ref) is None, 30)
    gone = await backend.status(stuck_ref, stuck)
    assert gone.state == RunState.FAILED and "deleted outside the platform" in gone.reason
    assert calls.n == 1


async def test_changed_refs_name_the_runs_whose_objects_changed(backend, data_dir):
    """Between full passes the reconcile loop reads only the runs the watches saw change."""
    await synced(backend, "Job", "Pod")
    assert backend.changed_refs() is None  # the first LISTs: anything may have changed
    assert backend.changed_refs() == set()
    first, second = run_spec(data_dir, hardware=CPU), run_spec(data_dir, hardware=CPU)
    first_ref = await backend.submit(first)
    assert await backend.informers["Job"].wait_for(lambda i: complete(i.get(first_ref)), 60)
    assert backend.changed_refs() == {first_ref}  # its Job and pod events
    assert backend.changed_refs() <= {first_ref}  # (a late pod update at most), never another run
    second_ref = await backend.submit(second)
    assert await backend.informers["Job"].wait_for(lambda i: complete(i.get(second_ref)), 60)
    assert backend.changed_refs() - {first_ref} == {second_ref}
    await backend.informers["Pod"].relist()  # a rebuilt cache: back to "anything may have changed"
    assert backend.changed_refs() is None


async def test_a_job_the_job_controller_has_not_touched_is_no_change(backend, data_dir):
    """A Job's events before the Job controller writes its status say nothing a run's state could
    show (its submit recorded Backend.initial_reason): the reconcile loop is not sent to read it.
    Once the Job has a status, or once it is deleted, it is a change again."""
    await synced(backend, "Job", "Pod")
    backend.changed_refs()
    spec = run_spec(data_dir, hardware=CPU)
    ref = await backend.submit(spec)
    jobs = backend.informers["Job"]
    assert await jobs.wait_for(lambda i: i.get(ref) is not None, 30)
    backend.changed_refs()
    untouched = {**jobs.get(ref), "status": {}}  # the Job as its ADDED event shows it
    jobs.apply({"type": "ADDED", "object": untouched})  # the watch's events, as the API server sends them
    assert backend.changed_refs() == set()
    jobs.apply({"type": "MODIFIED", "object": {**untouched, "status": {"active": 1}}})
    assert backend.changed_refs() == {ref}
    jobs.apply({"type": "DELETED", "object": untouched})
    assert jobs.get(ref) is None and backend.changed_refs() == {ref}
    assert backend.initial_reason == "waiting for the Job's pod to be created"


async def test_a_job_created_before_the_watch_saw_it_falls_back_to_a_get(backend, data_dir):
    await synced(backend, "Job", "Pod")
    spec = run_spec(data_dir, hardware=CPU)
    ref = await backend.submit(spec)
    jobs = backend.informers["Job"]
    jobs.apply({"type": "DELETED", "object": jobs.get(ref)})  # as if the ADDED event had not arrived yet
    assert ref not in jobs
    assert (await backend.status(ref, spec)).state != RunState.FAILED


class Proxy:
    """A TCP relay to the API server whose connections the test can cut."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.writers: list[asyncio.StreamWriter] = []
        self.server: asyncio.AbstractServer | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.target)
        self.writers += [writer, up_writer]

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(Exception):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

    def cut(self) -> None:
        for writer in self.writers:
            writer.transport.abort()
        self.writers.clear()

    async def close(self) -> None:
        self.cut()
        if self.server is not None:
            self.server.close()


async def test_a_cut_connection_lists_again_and_keeps_following(namespace, data_dir, backend):
    config = KubeConfig.load(kubeconfig())
    url = urlsplit(config.server)
    proxy = Proxy(url.hostname, url.port or 443)
    config.server = f"https://{url.hostname}:{await proxy.start()}"
    client = KubeClient(config, retries=2, backoff=0.05)
    informer = Informer(client, "batch/v1", "Job", namespace, SELECTOR, retry_delay=0.1)
    try:
        informer.start()
        assert await informer.wait_for(lambda i: i.synced, 30)
        assert informer.lists == 1
        # Cut a watch that is following (it delivered an event), not one whose request is still on
        # its way: a GET that meets a dead keep-alive connection before any answer is resent on a
        # new one by the HTTP client (aiohttp, RFC 9112 §9.3.1), which loses nothing and needs no LIST.
        first = await backend.submit(run_spec(data_dir, hardware=CPU))
        assert await informer.wait_for(lambda i: first in i, 30)
        proxy.cut()
        assert await informer.wait_for(lambda i: i.lists == 2 and i.synced, 30), informer.lists
        ref = await backend.submit(run_spec(data_dir, hardware=CPU))
        assert await informer.wait_for(lambda i: ref in i, 30)
        assert await informer.wait_for(lambda i: complete(i.get(ref)), 60)
    finally:
        await informer.stop()
        await client.close()
        await proxy.close()



async def test_a_watch_event_larger_than_a_read_buffer_arrives_whole(namespace):
    """A watch event is one JSON line as long as its object (a ConfigMap here: 600 KB): the client
    must not cap a line's length (aiohttp's own line reader stops at 512 KB: the watch broke, and
    the object came from the LIST after it)."""
    client = KubeClient(KubeConfig.load(kubeconfig()))
    informer = Informer(client, "v1", "ConfigMap", namespace, SELECTOR, retry_delay=0.1)
    value = "x" * 600_000
    try:
        informer.start()
        assert await informer.wait_for(lambda i: i.synced, 30)
        await client.create(labelled_config_map(namespace, "big", {"value": value}))
        assert await informer.wait_for(lambda i: "big" in i, 30), "the watch never delivered it"
        assert informer.get("big")["data"]["value"] == value
        assert informer.lists == 1  # delivered by the watch, not by a LIST after a broken one
    finally:
        await informer.stop()
        await client.delete("v1", "ConfigMap", namespace, "big")
        await client.close()


async def test_the_copy_keeps_no_managed_fields(namespace):
    """The API server records who set which field (managedFields, half a Job's bytes); the copy
    drops it, whether the object came from the LIST or from a watch event."""
    client = KubeClient(KubeConfig.load(kubeconfig()))
    informer = Informer(client, "v1", "ConfigMap", namespace, SELECTOR, retry_delay=0.1)
    try:
        listed = await client.create(labelled_config_map(namespace, "listed", {"key": "listed"}))
        assert listed["metadata"]["managedFields"], "the API server records managedFields"
        informer.start()
        assert await informer.wait_for(lambda i: i.synced, 30)
        await client.create(labelled_config_map(namespace, "watched", {"key": "watched"}))
        assert await informer.wait_for(lambda i: "watched" in i, 30), "the watch never delivered it"
        for name in ("listed", "watched"):
            kept = informer.get(name)
            assert kept["data"] == {"key": name} and kept["metadata"]["name"] == name
            assert "managedFields" not in kept["metadata"], kept["metadata"]
        assert informer.lists == 1
    finally:
        await informer.stop()
        for name in ("listed", "watched"):
            await client.delete("v1", "ConfigMap", namespace, name)
        await client.close()
