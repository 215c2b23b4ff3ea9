"""GPU sizes on the process backend: each run and deployment sees exactly its size's GPUs.

Stand-in: this machine has no GPU, so ``nvidia-smi`` is a script listing two (the only fake part;
the real GPU path is `scripts/gpu_check.py`, run on a GPU machine: docs/gpus.md). What the test
checks is the platform's side: which GPUs it gives each process, and what it refuses."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import httpx
import yaml

from notebooks import cell, notebook

GPU_A = "GPU-0a1b2c3d-0000-4000-8000-00000000000a"
GPU_B = "GPU-0a1b2c3d-0000-4000-8000-00000000000b"

VISIBLE_MODEL = '''
class Model:
    hyperparameters = {"seconds": 0.0}

    def train(self):
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        print(f"CUDA_VISIBLE_DEVICES={visible!r}")
        self.log_metric("gpus_visible", len([d for d in (visible or "").split(",") if d]))
        time.sleep(self.hyperparameters["seconds"])

    def batch_predict(self):
        pass

    def init_predict(self):
        pass

    def predict(self, features):
        return {"visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
'''


def fake_nvidia_smi(folder: Path, listing: str, exit_code: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    script.write_text(f"#!/bin/sh\ncat <<'EOF'\n{listing}EOF\nexit {exit_code}\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def gpu_server(factory, platform_yaml: Path, bin_dir: Path):
    config = yaml.safe_load(platform_yaml.read_text())
    gpu1 = next(h for h in config["hardware"] if h["name"] == "gpu-1")
    config["hardware"].append({**gpu1, "name": "gpu-2", "display_name": "Two GPUs", "gpus": 2})
    platform_yaml.write_text(yaml.safe_dump(config))
    return factory(config=platform_yaml, extra_env={"PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"})


def save_model(server, tmp_path: Path) -> None:
    nb = tmp_path / "visible.ipynb"
    nb.write_text(notebook(cell("import os\nimport time"), cell(VISIBLE_MODEL)))
    server.mlp_json("models", "save", str(nb), "--name", "visible")


def test_each_run_gets_its_own_gpu_and_cpu_sizes_see_none(mlp_server_factory, platform_yaml, tmp_path):
    listing = (f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {GPU_A})\n"
               f"GPU 1: NVIDIA H100 80GB HBM3 (UUID: {GPU_B})\n")
    server = gpu_server(mlp_server_factory, platform_yaml, fake_nvidia_smi(tmp_path / "bin", listing))
    save_model(server, tmp_path)

    # two one-GPU runs at once: one GPU each, not the same one
    first = server.mlp_json("train", "visible", "--hardware", "gpu-1", "--hp", "seconds=3")
    second = server.mlp_json("train", "visible", "--hardware", "gpu-1", "--hp", "seconds=3")
    logs = []
    for run in (first, second):
        done = server.wait_run(run["id"])
        assert done["status"] == "succeeded", done
        assert done["metrics"]["gpus_visible"] == 1
        logs.append(server.mlp("runs", "logs", run["id"]).stdout)
    assert {f"CUDA_VISIBLE_DEVICES='{GPU_A}'" in logs[0], f"CUDA_VISIBLE_DEVICES='{GPU_B}'" in logs[1]} == {True}, logs

    # a two-GPU size is distributed training: the runtime is given torchrun's rendezvous (this
    # Python has no PyTorch, so it stops there, saying so; tests/docker/test_distributed_training.py
    # runs real workers)
    ended = server.mlp("train", "visible", "--hardware", "gpu-2", "--wait", "--json", check=False)
    two = json.loads(ended.stdout)
    assert ended.returncode == 1
    assert two["status"] == "failed" and "distributed training (1 node(s) × 2 process(es))" in two["reason"], two
    assert "needs PyTorch in the environment" in two["reason"]

    cpu = server.mlp_json("train", "visible", "--hardware", "cpu-small", "--wait")
    assert cpu["metrics"]["gpus_visible"] == 0
    assert "CUDA_VISIBLE_DEVICES=''" in server.mlp("runs", "logs", cpu["id"]).stdout

    # a deployment on a GPU size: its serving process sees one GPU
    dep = server.mlp_json("deploy", "visible", "--run", first["id"], "--hardware", "gpu-1", "--wait")
    assert dep["status"] == "ready", dep
    answer = httpx.post(dep["url"] + "/invocations", json={}, timeout=30).json()
    assert answer["visible"] in (GPU_A, GPU_B)
    server.mlp("deployments", "delete", "visible")


def test_a_size_with_more_gpus_than_the_machine_is_refused_before_anything_is_recorded(
        mlp_server_factory, platform_yaml, tmp_path):
    listing = f"GPU 0: NVIDIA H100 80GB HBM3 (UUID: {GPU_A})\n"
    server = gpu_server(mlp_server_factory, platform_yaml, fake_nvidia_smi(tmp_path / "bin", listing))
    save_model(server, tmp_path)
    before = server.mlp_json("runs", "list")["items"]

    refused = server.mlp("train", "visible", "--hardware", "gpu-8", check=False)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "hardware size gpu-8 asks for 8 GPUs, but this machine has 1" in refused.stderr, refused.stderr
    with server.api() as api:
        answer = api.post("/runs", json={"model": "visible", "hardware": "gpu-8"})
    assert answer.status_code == 400 and answer.json()["error"] == "invalid_input", answer.text
    assert server.mlp_json("runs", "list")["items"] == before  # nothing half-written


def test_without_a_working_nvidia_smi_gpu_sizes_are_refused(mlp_server_factory, platform_yaml, tmp_path):
    server = gpu_server(mlp_server_factory, platform_yaml,
                        fake_nvidia_smi(tmp_path / "bin", "NVIDIA-SMI has failed: no driver\n", exit_code=9))
    save_model(server, tmp_path)
    refused = server.mlp("train", "visible", "--hardware", "gpu-1", check=False)
    assert refused.returncode != 0
    assert "asks for 1 GPU, but no NVIDIA GPU on this machine" in refused.stderr, refused.stderr
    ok = server.mlp_json("train", "visible", "--wait")  # the default CPU size still runs
    assert ok["status"] == "succeeded" and ok["metrics"]["gpus_visible"] == 0
