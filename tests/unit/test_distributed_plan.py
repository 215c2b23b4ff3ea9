"""The distributed-training plan of a node (runtime/distributed.py) and the rendezvous environment
backends give (backends/common.py). Real multi-process runs: tests/docker/test_distributed_training.py."""

from __future__ import annotations

import json

import pytest

from mlplatform_server.backends.base import Hardware
from mlplatform_server.backends.common import refuse_several_nodes, rendezvous_env
from mlplatform_server.errors import InvalidInput
from mlplatform_server.runtime.distributed import (
    DistributedSetupError,
    first_failure,
    worker_plan,
    worker_result_path,
)

RDZV = {"MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29500", "NNODES": "2", "NPROC_PER_NODE": "4", "NODE_RANK": "1"}


def test_each_worker_gets_torchruns_environment():
    plan = worker_plan(RDZV)
    assert plan is not None and plan.world_size == 8
    assert plan.worker_env(3) == {"RANK": "7", "LOCAL_RANK": "3", "WORLD_SIZE": "8", "LOCAL_WORLD_SIZE": "4",
                                  "GROUP_RANK": "1", "MASTER_ADDR": "10.0.0.5", "MASTER_PORT": "29500"}


def test_one_process_or_a_worker_itself_has_no_plan():
    assert worker_plan({}) is None
    assert worker_plan({**RDZV, "NNODES": "1", "NPROC_PER_NODE": "1"}) is None
    assert worker_plan({**RDZV, "RANK": "5", "LOCAL_RANK": "1"}) is None


@pytest.mark.parametrize("env, message", [
    ({**RDZV, "MASTER_ADDR": ""}, "needs MASTER_ADDR in the environment"),
    ({**RDZV, "NODE_RANK": "2"}, "NODE_RANK=2 is not below NNODES=2"),
    ({**RDZV, "NPROC_PER_NODE": "four"}, "NPROC_PER_NODE='four' is not a whole number"),
])
def test_a_broken_rendezvous_environment_is_named(env, message):
    with pytest.raises(DistributedSetupError, match=message):
        worker_plan(env)


def test_the_rank_that_failed_first_is_the_reason(tmp_path):
    result = tmp_path / "result.json"
    for rank, finished, reason in [(0, "2026-11-27T10:00:05+00:00", "RuntimeError: Connection closed by peer"),
                                   (2, "2026-11-27T10:00:01+00:00", "ValueError: bad shard")]:
        worker_result_path(result, rank).write_text(json.dumps(
            {"status": "failed", "reason": reason, "finished_at": finished}))
    worker_result_path(result, 1).write_text(json.dumps({"status": "succeeded", "finished_at": "2026-11-27T09:00:00+00:00"}))
    assert worker_result_path(result, 2).name == "result.rank2.json"
    assert first_failure(result, {"NNODES": "1", "NPROC_PER_NODE": "4"}) == "rank 2: ValueError: bad shard"
    assert first_failure(tmp_path / "other.json", {"NNODES": "1", "NPROC_PER_NODE": "4"}) is None


def test_backends_give_rendezvous_only_to_runs_of_several_processes():
    assert rendezvous_env(Hardware(name="gpu-1", cpu=8, memory="32Gi", gpus=1), "127.0.0.1", 4000) == {}
    assert rendezvous_env(Hardware(name="gpu-4", cpu=8, memory="32Gi", gpus=4), "127.0.0.1", 4000) == {
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "4000", "WORLD_SIZE": "4", "NNODES": "1",
        "NPROC_PER_NODE": "4", "NODE_RANK": "0"}
    several = rendezvous_env(Hardware(name="cpu-3n", cpu=2, memory="4Gi", nodes=3), "job-0.job", 29500)
    assert several["WORLD_SIZE"] == "3" and "NODE_RANK" not in several  # each pod's own index
    with pytest.raises(InvalidInput, match="spans 3 nodes, but the process backend runs on one machine"):
        refuse_several_nodes(Hardware(name="cpu-3n", cpu=2, memory="4Gi", nodes=3), "process")


def test_worker_output_reaches_the_node_a_whole_line_at_a_time(tmp_path):
    """Two unbuffered workers print at once (print: the text, then its newline, two writes); through
    forward_lines into one output every line arrives whole, so each MLP_METRIC line starts a line."""
    import subprocess
    import sys
    import threading

    from mlplatform_server.runtime.distributed import forward_lines

    script = ("import sys\nfor i in range(3000):\n"
              "    print(sys.argv[1] + str(i) + ' ' + 'x' * (i % 97))\n")
    env = {"PYTHONUNBUFFERED": "1", "PATH": "/usr/bin:/bin"}
    workers = [subprocess.Popen([sys.executable, "-c", script, tag], stdout=subprocess.PIPE, env=env)
               for tag in ("MLP_METRIC ", "rank 1 says ")]
    out = (tmp_path / "node.log").open("wb")
    lock = threading.Lock()
    threads = [threading.Thread(target=forward_lines, args=(w.stdout, out, lock)) for w in workers]
    for thread in threads:
        thread.start()
    for worker in workers:
        assert worker.wait(timeout=60) == 0
    for thread in threads:
        thread.join(timeout=30)
    out.close()
    lines = (tmp_path / "node.log").read_text().splitlines()
    expected = {f"{tag}{i} {'x' * (i % 97)}" for tag in ("MLP_METRIC ", "rank 1 says ") for i in range(3000)}
    assert len(lines) == 6000 and set(lines) == expected
