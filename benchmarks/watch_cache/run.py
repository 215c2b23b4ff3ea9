"""The watch cache's copy against a copy of parsed objects: memory and garbage-collector work.

    .venv/bin/python benchmarks/watch_cache/run.py [--objects 5000]

Feeds --objects Pods shaped like a training run's (tests/kube_objects.py's ``training_pod``) to
the informer (backends/kubernetes/cache.py: each object kept as JSON bytes with its labels) and, in
the same run, keeps the same events' objects as parsed dicts, managedFields dropped — what the
informer kept before 2026-11-28 11:05 and what a dict-of-objects cache keeps. Each object goes
through orjson as a watch event would. Prints, each way: the long-lived containers the cyclic
garbage collector must walk, the time of one full collection (the median of five) and the memory the
copy holds (tracemalloc), and the informer's figure over the anchor's. No API server needed.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import sys
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import orjson

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from mlplatform_server.backends.kubernetes import manifests as mf  # noqa: E402
from mlplatform_server.backends.kubernetes.cache import Informer, label_index  # noqa: E402
from kube_objects import training_pod  # noqa: E402


def events(count: int) -> list[bytes]:
    return [orjson.dumps({"type": "ADDED", "object": training_pod(f"p{i}", f"job-{i}")}) for i in range(count)]


class ParsedCopy:
    """The anchor: each object kept as the watch parsed it (managedFields dropped), by name."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}

    def apply(self, event: dict[str, Any]) -> None:
        obj = event["object"]
        obj["metadata"].pop("managedFields", None)
        self.objects[obj["metadata"]["name"]] = obj


def informer() -> Informer:
    return Informer(None, "v1", "Pod", "ns", None, index=label_index(mf.JOB_NAME_LABEL))  # type: ignore[arg-type]


def measure(make: Callable[[], Any], lines: list[bytes]) -> dict[str, float]:
    gc.collect()
    tracked_before = len(gc.get_objects())
    tracemalloc.start()
    copy = make()
    for line in lines:
        copy.apply(orjson.loads(line))
    held = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    gc.collect()
    tracked = len(gc.get_objects()) - tracked_before
    times = []
    for _ in range(5):
        start = time.process_time()
        gc.collect()
        times.append(time.process_time() - start)
    del copy
    return {"tracked": tracked, "collect_ms": statistics.median(times) * 1000, "mib": held / 2**20}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=5000, help="Pods in the copy (5000)")
    args = parser.parse_args()
    if args.objects < 1:
        parser.error(f"--objects: expected a whole number of at least 1, got {args.objects}")
    lines = events(args.objects)
    gc.freeze()  # this script's own startup objects out of the way, as the server does
    anchor = measure(ParsedCopy, lines)
    ours = measure(informer, lines)
    print(f"{args.objects} Pods of ≈ {sum(map(len, lines)) // len(lines)} bytes of JSON each")
    print(f"{'':34}{'informer (JSON bytes)':>24}{'parsed copy (anchor)':>24}{'ratio':>8}")
    for key, label, fmt in (("tracked", "containers the gc walks", "{:.0f}"),
                            ("collect_ms", "one full collection, ms", "{:.2f}"),
                            ("mib", "memory held, MiB", "{:.1f}")):
        ratio = ours[key] / anchor[key] if anchor[key] else float("nan")
        print(f"{label:34}{fmt.format(ours[key]):>24}{fmt.format(anchor[key]):>24}{ratio:>8.2f}")


if __name__ == "__main__":
    main()
