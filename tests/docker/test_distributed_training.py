"""Distributed training with real PyTorch (the deep-learning environment image, in Podman): the
runtime's ``train``, given the rendezvous environment a backend gives a size with several GPUs or
nodes (backends/common.py ``rendezvous_env``), starts torchrun and one ``Model.train`` per process.

CPU processes and the gloo backend stand in for GPUs and NCCL (there is no GPU here); the
platform's side — torchrun started with the right ranks, one result, rank 0's metrics only, the
failing rank named — is the same. The runtime is this checkout's (mounted), whatever the image holds.
"""

from __future__ import annotations

import json
import os
import textwrap
import uuid
from pathlib import Path

import pytest

from support import free_port

pytestmark = pytest.mark.docker

ROOT = Path(__file__).resolve().parents[2]

DDP_MODEL = textwrap.dedent('''
    import torch
    import torch.distributed as dist


    class Model:
        hyperparameters = {"steps": 200, "fail_rank": -1}

        def train(self):
            dist.init_process_group("gloo")
            rank, world = dist.get_rank(), dist.get_world_size()
            if rank == self.hyperparameters["fail_rank"]:
                raise ValueError(f"rank {rank} was told to fail")
            torch.manual_seed(rank)  # each rank its own shard of y = 3x + 0.5
            x = torch.rand(256, 1) * 2 - 1
            y = 3 * x + 0.5
            torch.manual_seed(0)
            net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(1, 1))
            optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
            for _ in range(self.hyperparameters["steps"]):
                optimizer.zero_grad()
                loss = torch.nn.functional.mse_loss(net(x), y)
                loss.backward()  # gradients averaged across ranks
                optimizer.step()
            weights = torch.cat([p.detach().flatten() for p in net.parameters()])
            gathered = [torch.zeros_like(weights) for _ in range(world)]
            dist.all_gather(gathered, weights)
            same = all(torch.equal(gathered[0], g) for g in gathered)
            print(f"rank {rank} of {world}: weights {weights.tolist()}", flush=True)
            self.log_metric("world_size", world)
            self.log_metric("ranks_agree", 1 if same else 0)
            self.log_metric("mse", loss.item())
            if rank == 0:
                torch.save(net.module.state_dict(), self.artifacts / "net.pt")
            dist.destroy_process_group()

        def predict(self, features):
            return {}
''')


@pytest.fixture
def deep_learning_image(engine) -> str:
    image = os.environ.get("MLP_TEST_IMAGE_DEEP_LEARNING")
    if not image:
        pytest.fail("MLP_TEST_IMAGE_DEEP_LEARNING is not set: run the suite with `make test` (scripts/build-images.sh)")
    return image


def train_node(engine, image: str, run_dir: Path, env: dict[str, str], hyperparameters: dict | None = None):
    """Start the runtime's ``train`` as one node in a container (host network, as pods of one Job
    reach each other); returns the container."""
    (run_dir / "artifacts").mkdir(parents=True, exist_ok=True)
    environment = {
        "PYTHONPATH": "/src",
        "MLP_MODULE_PATH": "/run/model.py",
        "MLP_ARTIFACTS": "/run/artifacts",
        "MLP_RESULT_PATH": "/run/result.json",
        "MLP_RUN_ID": "ddp",
        **({"MLP_HYPERPARAMETERS": json.dumps(hyperparameters)} if hyperparameters else {}),
        **env,
    }
    return engine.containers.run(
        image, ["python3", "-m", "mlplatform_server.runtime", "train"], detach=True, user="0:0",
        network_mode="host", environment=environment, working_dir="/run",
        name=f"mlp-ddp-{uuid.uuid4().hex[:8]}", labels={"mlplatform.test": "distributed"},
        volumes={str(ROOT / "mlplatform_server"): {"bind": "/src/mlplatform_server", "mode": "ro"},
                 str(run_dir): {"bind": "/run", "mode": "rw"}})


def finish(container) -> tuple[int, str]:
    try:
        status = container.wait(timeout=240)
        return status["StatusCode"], container.logs().decode()
    finally:
        container.remove(force=True)


def metric_lines(logs: str, name: str) -> list[dict]:
    items = [json.loads(line.split(" ", 1)[1]) for line in logs.splitlines() if line.startswith("MLP_METRIC ")]
    return [item for item in items if item["name"] == name]


def rendezvous(nodes: int, per_node: int, port: int) -> dict[str, str]:
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nodes * per_node),
            "NNODES": str(nodes), "NPROC_PER_NODE": str(per_node)}


def test_one_node_two_processes_train_one_model_data_parallel(engine, deep_learning_image, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.py").write_text(DDP_MODEL)
    code, logs = finish(train_node(engine, deep_learning_image, run_dir,
                                   {**rendezvous(1, 2, free_port()), "NODE_RANK": "0"}))
    assert code == 0, logs
    assert json.loads((run_dir / "result.json").read_text())["status"] == "succeeded"
    assert "MLP_DISTRIBUTED nnodes=1 nproc_per_node=2 node_rank=0 master=127.0.0.1:" in logs
    assert "rank 0 of 2: weights" in logs and "rank 1 of 2: weights" in logs
    starts = [line for line in logs.splitlines() if line.startswith("MLP_START")]
    assert len(starts) == 3 and sum("rank=0" in s for s in starts) == sum("rank=1" in s for s in starts) == 1
    # rank 0 alone reports: one value per metric, not one per process
    assert [m["value"] for m in metric_lines(logs, "world_size")] == [2.0]
    assert [m["value"] for m in metric_lines(logs, "ranks_agree")] == [1.0]
    assert metric_lines(logs, "mse")[0]["value"] < 1e-3
    assert (run_dir / "artifacts" / "net.pt").stat().st_size > 0
    assert [json.loads((run_dir / f"result.rank{r}.json").read_text())["status"] for r in (0, 1)] == \
        ["succeeded", "succeeded"]


def test_two_nodes_meet_at_the_master_address(engine, deep_learning_image, tmp_path):
    """Two containers as the two pods of an Indexed Job: each its NODE_RANK, one master."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.py").write_text(DDP_MODEL)
    env = rendezvous(2, 1, free_port())
    nodes = [train_node(engine, deep_learning_image, run_dir, {**env, "NODE_RANK": str(rank)}) for rank in (0, 1)]
    (code0, logs0), (code1, logs1) = finish(nodes[0]), finish(nodes[1])
    assert (code0, code1) == (0, 0), logs0 + logs1
    assert "rank 0 of 2: weights" in logs0 and "rank 1 of 2: weights" in logs1
    assert [m["value"] for m in metric_lines(logs0, "ranks_agree")] == [1.0]
    assert metric_lines(logs1, "ranks_agree") == []  # node 1's only process is rank 1: it reports nothing


def test_a_failing_rank_fails_the_run_with_its_reason(engine, deep_learning_image, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.py").write_text(DDP_MODEL)
    code, logs = finish(train_node(engine, deep_learning_image, run_dir,
                                   {**rendezvous(1, 2, free_port()), "NODE_RANK": "0"},
                                   hyperparameters={"steps": 200, "fail_rank": 1}))
    result = json.loads((run_dir / "result.json").read_text())
    assert code == 1, logs
    assert result["status"] == "failed"
    assert result["reason"].startswith("rank 1: ValueError: rank 1 was told to fail"), result
    assert 'MLP_END status=failed exit_code=1 reason="rank 1: ValueError' in logs


def test_distributed_training_without_pytorch_is_a_clear_setup_error(engine, test_image, tmp_path):
    """The python environment has no PyTorch: a multi-GPU size there fails at once, saying why."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "model.py").write_text("class Model:\n    def train(self):\n        pass\n")
    code, logs = finish(train_node(engine, test_image, run_dir, {**rendezvous(1, 4, free_port()), "NODE_RANK": "0"}))
    result = json.loads((run_dir / "result.json").read_text())
    assert code == 2 and result["status"] == "failed"
    assert "needs PyTorch in the environment" in result["reason"], result
