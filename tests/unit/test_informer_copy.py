"""The watch cache's copy (backends/kubernetes/cache.py): what it keeps of each object and how it is
found again. Events go through the informer's public ``apply``, as its watch feeds them; no API
server is needed for the copy itself (tests/kube/test_watch_cache.py runs it against a real one).
"""

from __future__ import annotations

import gc
import tracemalloc

import orjson

from mlplatform_server.backends.kubernetes import manifests as mf
from mlplatform_server.backends.kubernetes.cache import Informer, label_index
from kube_objects import training_pod as pod


def informer() -> Informer:
    # The copy needs no client: only ``run`` (the LIST and the WATCH) uses it.
    return Informer(None, "v1", "Pod", "ns", None, index=label_index(mf.JOB_NAME_LABEL))  # type: ignore[arg-type]


def tracked_containers() -> int:
    gc.collect()
    return len(gc.get_objects())


def test_the_copy_gives_the_garbage_collector_almost_nothing_to_walk():
    """Kept parsed, each Pod was ≈ 30 long-lived dicts and lists that every full collection walked
    again (a few thousand runs made the server's CPU per run grow by a third); kept as JSON bytes
    with its labels, an object adds at most its index's set."""
    pods = informer()
    before = tracked_containers()
    for i in range(300):
        pods.apply({"type": "ADDED", "object": pod(f"p{i}", f"job-{i}")})
    added = tracked_containers() - before
    assert len(pods.select({})) == 300
    assert added <= 2 * 300, f"{added} containers for 300 cached pods"


def test_the_copy_holds_about_the_json_and_no_write_buffer():
    """orjson's answer keeps its whole write buffer (≈ 4 KB for a 1.3 KB Pod here); the copy keeps
    an exact-size copy of the JSON, plus its labels and its index entry."""
    sent = [pod(f"p{i}", f"job-{i}") for i in range(300)]
    json_bytes = 0
    for obj in sent:
        del obj["metadata"]["managedFields"]
        json_bytes += len(orjson.dumps(obj))
    pods = informer()
    tracemalloc.start()
    try:
        for i in range(300):
            pods.apply({"type": "ADDED", "object": pod(f"p{i}", f"job-{i}")})
        held = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert held < 2 * json_bytes, f"{held} bytes held for {json_bytes} bytes of JSON"


def test_a_read_is_the_object_as_sent_less_its_managed_fields_and_a_fresh_copy():
    pods = informer()
    sent = pod("p", "job-a")
    pods.apply({"type": "ADDED", "object": pod("p", "job-a")})
    kept = pods.get("p")
    del sent["metadata"]["managedFields"]
    assert kept == sent
    kept["status"]["phase"] = "Failed"  # a caller's change stays in the caller's copy
    assert pods.get("p")["status"]["phase"] == "Running"
    assert pods.get("missing") is None and "missing" not in pods


def test_the_index_follows_modified_and_deleted_objects():
    pods = informer()
    pods.apply({"type": "ADDED", "object": pod("p1", "job-a")})
    pods.apply({"type": "ADDED", "object": pod("p2", "job-a")})
    assert sorted(p["metadata"]["name"] for p in pods.indexed("job-a")) == ["p1", "p2"]
    pods.apply({"type": "MODIFIED", "object": pod("p2", "job-b", phase="Succeeded")})  # its label changed
    assert [p["metadata"]["name"] for p in pods.indexed("job-a")] == ["p1"]
    assert [p["status"]["phase"] for p in pods.indexed("job-b")] == ["Succeeded"]
    pods.apply({"type": "DELETED", "object": pod("p1", "job-a")})
    assert pods.indexed("job-a") == [] and "p1" not in pods and len(pods.select({})) == 1


def test_select_by_labels_and_by_a_label_present():
    pods = informer()
    pods.apply({"type": "ADDED", "object": pod("plain", "job-a")})
    pods.apply({"type": "ADDED", "object": pod("fired", "job-b", **{"mlplatform.io/schedule-id": "s1"})})
    assert [p["metadata"]["name"] for p in pods.select({mf.JOB_NAME_LABEL: "job-a"})] == ["plain"]
    assert [p["metadata"]["name"] for p in pods.select({}, having="mlplatform.io/schedule-id")] == ["fired"]
    assert len(pods.select(dict(mf.MANAGED_BY))) == 2
    assert pods.select({mf.JOB_NAME_LABEL: "job-c"}) == []
