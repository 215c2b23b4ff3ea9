#!/usr/bin/env python3
"""The GPU path on a machine that has one (not part of `make test`: CI has no GPU; docs/gpus.md).

Starts a real `mlp server --backend process` (SQLite, the shipped default sizes), saves a PyTorch
model, and checks what a researcher would: a `gpu-1` run trains on the GPU and sees exactly one,
a `cpu-small` run sees none, a `gpu-1` deployment answers `/invocations` from the GPU, the local
hub's form would offer the GPU size, and the runtime's distributed agent (the environment a
backend gives a two-GPU size) trains one DDP model with two ranks on the GPU(s). The Python running this must have PyTorch with CUDA.

    python3 scripts/gpu_check.py [--json OUT]

Exit 0 when every check holds, 1 otherwise; prints each check and a JSON summary.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mlplatform_server.backends.common import free_port  # noqa: E402

MODEL = '''
import os
import time

import torch


class Model:
    hyperparameters = {"hidden": 256, "steps": 400, "lr": 0.01}

    def train(self):
        device = "cuda" if torch.cuda.is_available() else "cpu"
        print(f"CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES')!r} device={device}"
              + (f" ({torch.cuda.get_device_name(0)})" if device == "cuda" else ""))
        torch.manual_seed(0)
        x = torch.rand(4096, 16, device=device) * 2 - 1
        y = (x ** 2).sum(dim=1, keepdim=True)
        hidden = self.hyperparameters["hidden"]
        net = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)).to(device)
        optimizer = torch.optim.Adam(net.parameters(), lr=self.hyperparameters["lr"])
        started = time.perf_counter()
        for _ in range(self.hyperparameters["steps"]):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        self.log_metric("train_seconds", time.perf_counter() - started)
        self.log_metric("mse", loss.item())
        self.log_metric("cuda_devices", torch.cuda.device_count())
        self.log_metric("on_gpu", 1 if next(net.parameters()).is_cuda else 0)
        torch.save(net.state_dict(), self.artifacts / "net.pt")

    def batch_predict(self):
        pass

    def init_predict(self):
        self.device = "cuda" if torch.cuda.is_available() else "cpu"
        hidden = self.hyperparameters["hidden"]
        self.net = torch.nn.Sequential(torch.nn.Linear(16, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1))
        self.net.load_state_dict(torch.load(self.artifacts / "net.pt", map_location=self.device))
        self.net.to(self.device)

    def predict(self, features):
        x = torch.tensor([features["x"]], dtype=torch.float32, device=self.device)
        with torch.no_grad():
            return {"y": float(self.net(x)[0, 0]), "device": str(x.device),
                    "visible": os.environ.get("CUDA_VISIBLE_DEVICES")}
'''


DDP_MODEL = '''
import os

import torch
import torch.distributed as dist


class Model:
    hyperparameters = {"steps": 300}

    def train(self):
        local_rank = int(os.environ["LOCAL_RANK"])
        gpus = torch.cuda.device_count()
        device = torch.device("cuda", local_rank % gpus)
        torch.cuda.set_device(device)
        # NCCL wants a GPU per rank; with fewer, gloo moves the CUDA tensors
        dist.init_process_group("nccl" if gpus >= int(os.environ["WORLD_SIZE"]) else "gloo")
        rank, world = dist.get_rank(), dist.get_world_size()
        torch.manual_seed(rank)
        x = torch.rand(1024, 4, device=device) * 2 - 1
        y = x.sum(dim=1, keepdim=True) * 2 + 1
        torch.manual_seed(0)
        net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(4, 1).to(device), device_ids=[device.index])
        optimizer = torch.optim.SGD(net.parameters(), lr=0.1)
        for _ in range(self.hyperparameters["steps"]):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()
        weights = torch.cat([p.detach().flatten() for p in net.parameters()])
        gathered = [torch.zeros_like(weights) for _ in range(world)]
        dist.all_gather(gathered, weights)
        print(f"rank {rank} of {world} on {device} ({dist.get_backend()}): mse {loss.item():.2e}", flush=True)
        self.log_metric("ranks_agree", 1 if all(torch.equal(gathered[0], g) for g in gathered) else 0)
        self.log_metric("mse", loss.item())
        self.log_metric("world_size", world)
        dist.destroy_process_group()

    def predict(self, features):
        return {}
'''


def distributed_check(checks: "Checks", work: Path) -> None:
    """The runtime as a node agent (the environment a backend gives a two-GPU size): two workers
    train one DDP model on the GPU(s) — NCCL when there is a GPU per rank, else gloo on CUDA tensors."""
    run = work / "ddp"
    (run / "artifacts").mkdir(parents=True)
    (run / "model.py").write_text(DDP_MODEL)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "MLP_MODULE_PATH": str(run / "model.py"), "MLP_ARTIFACTS": str(run / "artifacts"),
           "MLP_RESULT_PATH": str(run / "result.json"), "MLP_RUN_ID": "ddp",
           "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(free_port()), "WORLD_SIZE": "2", "NNODES": "1",
           "NPROC_PER_NODE": "2", "NODE_RANK": "0"}
    env.pop("CUDA_VISIBLE_DEVICES", None)
    proc = subprocess.run([sys.executable, "-m", "mlplatform_server.runtime", "train"], env=env, cwd=run,
                          capture_output=True, text=True, timeout=300)
    print(proc.stdout[-3000:], proc.stderr[-3000:])
    metrics = {}
    for line in proc.stdout.splitlines():
        if line.startswith("MLP_METRIC "):
            item = json.loads(line.split(" ", 1)[1])
            metrics[item["name"]] = item["value"]
    result = json.loads((run / "result.json").read_text()) if (run / "result.json").exists() else {}
    checks.check("two ranks train one DDP model on the GPU through the runtime's agent",
                 proc.returncode == 0 and result.get("status") == "succeeded" and metrics.get("ranks_agree") == 1
                 and metrics.get("world_size") == 2 and metrics.get("mse", 1) < 1e-3,
                 {"exit": proc.returncode, "result": result.get("status"), **metrics,
                  "ranks": [ln for ln in proc.stdout.splitlines() if ln.startswith("rank ")]})


class Checks:
    def __init__(self) -> None:
        self.results: list[dict[str, object]] = []

    def check(self, name: str, ok: bool, detail: object) -> None:
        self.results.append({"check": name, "ok": bool(ok), "detail": detail})
        print(f"{'PASS' if ok else 'FAIL'}  {name}: {detail}", flush=True)

    @property
    def ok(self) -> bool:
        return bool(self.results) and all(r["ok"] for r in self.results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write the summary here")
    args = parser.parse_args()

    from mlplatform_server.gpus import machine_gpus

    checks = Checks()
    gpus = machine_gpus()
    checks.check("nvidia-smi lists the machine's GPUs", len(gpus) >= 1, [f"{g.index}: {g.name} {g.uuid}" for g in gpus])
    if not gpus:
        return 1

    work = Path(tempfile.mkdtemp(prefix="mlp-gpu-check-"))
    port, token = free_port(), "admin-" + os.urandom(8).hex()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "MLP_TOKEN": token, "MLP_URL": url, "PYTHONUNBUFFERED": "1"}
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([sys.executable, "-m", "mlplatform_server.cli", "server", "--backend", "process",
                               "--data-dir", str(work / "data"), "--port", str(port)],
                              stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)

    def mlp(*argv: str) -> dict:
        proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", *argv, "--json"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"mlp {' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()} "
                               f"{proc.stdout.strip()[-2000:]}")
        return json.loads(proc.stdout)

    try:
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(url + "/api/v1/health", timeout=1)
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise RuntimeError("mlp server did not start:\n" + (work / "server.log").read_text())
                time.sleep(0.2)

        module = work / "gpumodel.py"
        module.write_text(MODEL)
        mlp("models", "save", str(module), "--name", "gpumodel")

        gpu_run = mlp("train", "gpumodel", "--hardware", "gpu-1", "--wait")
        metrics = gpu_run.get("metrics", {})
        checks.check("gpu-1 run succeeded on the GPU, seeing exactly one",
                     gpu_run["status"] == "succeeded" and metrics.get("on_gpu") == 1 and metrics.get("cuda_devices") == 1,
                     {"status": gpu_run["status"], **metrics})
        checks.check("gpu-1 run learned (MSE < 0.05)", metrics.get("mse", 1) < 0.05, metrics.get("mse"))

        cpu_run = mlp("train", "gpumodel", "--hardware", "cpu-small", "--wait")
        cpu_metrics = cpu_run.get("metrics", {})
        checks.check("cpu-small run sees no GPU",
                     cpu_run["status"] == "succeeded" and cpu_metrics.get("on_gpu") == 0
                     and cpu_metrics.get("cuda_devices") == 0, {"status": cpu_run["status"], **cpu_metrics})

        dep = mlp("deploy", "gpumodel", "--run", gpu_run["id"], "--hardware", "gpu-1", "--wait")
        request = urllib.request.Request(dep["url"] + "/invocations", data=json.dumps({"x": [0.5] * 16}).encode(),
                                         headers={"Content-Type": "application/json"})
        answer = json.loads(urllib.request.urlopen(request, timeout=60).read())
        checks.check("gpu-1 deployment answers /invocations from the GPU",
                     answer.get("device") == "cuda:0" and abs(answer["y"] - 4.0) < 0.5
                     and answer.get("visible") in {g.uuid for g in gpus}, answer)
        mlp("deployments", "delete", "gpumodel")

        from mlplatform_server.config import load_config
        from mlplatform_server.gpus import shortage

        sizes = {size.name: size for size in load_config(None).hardware}
        checks.check("the hub form would offer gpu-1 (no shortage)", shortage("gpu-1", sizes["gpu-1"].gpus, len(gpus)) is None,
                     len(gpus))
        distributed_check(checks, work)
    except Exception as exc:  # one FAIL line, then the summary
        checks.check("the check ran to the end", False, f"{type(exc).__name__}: {exc}")
        print((work / "server.log").read_text()[-4000:])
        for logs in sorted((work / "data").rglob("logs.txt")):
            print(f"--- {logs}\n{logs.read_text(errors='replace')[-2000:]}")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)

    summary = {"ok": checks.ok, "gpus": [g.__dict__ for g in gpus], "checks": checks.results}
    print(json.dumps(summary, indent=2))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0 if checks.ok else 1


if __name__ == "__main__":
    sys.exit(main())
