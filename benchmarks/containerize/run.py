"""Containerize: the `layer` builder against a cold `engine` build, side by side, in one run.

    source .testenv/env.sh && .venv/bin/python benchmarks/containerize/run.py [--large-gb 3] [--repeat 3]

For each base — the environment image MLP_TEST_BASE_REF (pushed by scripts/registry.sh); with
--gpu, the `gpu` environment image (MLP_TEST_IMAGE_GPU from `make images`, ≈ 3 GB compressed: PyTorch's
CUDA build; pushed here once); with --large-gb N, the base plus one N GB incompressible layer (made
here once, streamed straight into the registry) — it builds the same model version twice:

- layer: append the code layer in the registry (best of --repeat; each into a fresh repository,
  so the base blobs are mounted every time and nothing is cached in the target);
- engine, cold: a private Podman API service with empty storage (its own --root), so the base is
  pulled from the registry, then `docker build` and push.

Prints seconds, bytes uploaded and the code layer's size, and the speed-ups.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from mlplatform_server.builders.context import make_context, sha256_digest  # noqa: E402
from mlplatform_server.builders.engine import build_engine  # noqa: E402
from mlplatform_server.builders.layer import build_layer  # noqa: E402
from mlplatform_server.builders.registry import ImageRef, RegistryClient  # noqa: E402

CHUNK = 1 << 20
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"


def push_local_image(registry: str, image: str, repo: str) -> str:
    """Push a locally built image (podman storage) into the registry once; return its reference."""
    target = f"{registry}/{repo}:{image.rsplit(':', 1)[1]}"
    with RegistryClient(registry) as client:
        try:
            client.get_manifest(repo, target.rsplit(":", 1)[1])
            return target
        except Exception:
            pass
    print(f"pushing {image} to {target} (once)…", flush=True)
    started = time.monotonic()
    subprocess.run(["podman", "push", "--quiet", "--tls-verify=false", image, f"docker://{target}"], check=True)
    print(f"  pushed in {time.monotonic() - started:.1f}s", flush=True)
    return target


def registries() -> dict[str, str]:
    out = subprocess.run([str(ROOT / "scripts" / "registry.sh"), "env"], capture_output=True, text=True, check=True)
    return dict(line.removeprefix("export ").replace("'", "").split("=", 1) for line in out.stdout.splitlines())


def notebook_folder(tmp: Path) -> Path:
    folder = tmp / "project"
    folder.mkdir()
    nb = ROOT / "tests" / "notebooks.py"
    (folder / "helpers.py").write_text(nb.read_text())  # ~ a real helper module's size
    (folder / "vocab.json").write_text(json.dumps({f"w{i}": i for i in range(5000)}))
    return folder


def context_for(base: str, folder: Path):
    module = (ROOT / "tests" / "notebooks.py").read_text()
    return make_context(model="bench", version="1", content_hash=sha256_digest(module.encode()),
                        module_source=module, env_image=base, notebook_name="bench.ipynb",
                        notebook_bytes=b'{"cells": []}', folder=folder, created="2026-01-01T00:00:00Z")


# -- a large base: the environment image plus one big layer -------------------------------------
def _big_tar_chunks(size: int, seed: int = 7):
    """A tar with one file of `size` pseudo-random bytes, in chunks (deterministic)."""
    info = tarfile.TarInfo("opt/large/blob.bin")
    info.size, info.mode, info.mtime = size, 0o644, 0
    yield info.tobuf(format=tarfile.PAX_FORMAT)
    rng = random.Random(seed)
    left = size
    while left:
        n = min(CHUNK, left)
        yield rng.randbytes(n)
        left -= n
    yield b"\0" * ((512 - size % 512) % 512) + b"\0" * 1024


def make_large_base(registry: str, base: str, gb: float) -> str:
    src = ImageRef.parse(base)
    repo, tag = "mlplatform/python-large", f"{src.tag}-{gb:g}g"
    target = f"{registry}/{repo}:{tag}"
    with RegistryClient(registry) as client:
        try:
            client.get_manifest(repo, tag)
            return target
        except Exception:
            pass
        size = int(gb * 1024 ** 3)
        print(f"making the {gb:g} GB base {target} (once)…", flush=True)
        started = time.monotonic()
        digest, length = hashlib.sha256(), 0
        for chunk in _big_tar_chunks(size):
            digest.update(chunk)
            length += len(chunk)
        layer_digest = "sha256:" + digest.hexdigest()
        manifest, media_type, _ = client.get_manifest(src.repository, src.reference)
        config = json.loads(client.get_blob(src.repository, manifest["config"]["digest"]))
        for layer in manifest["layers"]:
            client.mount_blob(repo, layer["digest"], src.repository)
        if not client.has_blob(repo, layer_digest):
            start = client.http.post(f"/v2/{repo}/blobs/uploads/")
            url = str(httpx.URL(start.headers["Location"]).copy_merge_params({"digest": layer_digest}))
            put = client.http.put(url, content=_big_tar_chunks(size), timeout=3600,
                                  headers={"Content-Type": "application/octet-stream", "Content-Length": str(length)})
            put.raise_for_status()
        config["rootfs"]["diff_ids"].append(layer_digest)
        config.setdefault("history", []).append({"created_by": f"benchmark: {gb:g} GB layer"})
        config_bytes = json.dumps(config).encode()
        client.upload_blob(repo, config_bytes, sha256_digest(config_bytes))
        manifest["config"] = {**manifest["config"], "digest": sha256_digest(config_bytes), "size": len(config_bytes)}
        manifest["layers"].append({"mediaType": LAYER_TAR, "digest": layer_digest, "size": length})
        manifest.pop("annotations", None)
        client.put_manifest(repo, tag, json.dumps(manifest).encode(), media_type)
        print(f"  made in {time.monotonic() - started:.1f}s", flush=True)
    return target


# -- a cold engine: Podman with empty storage ----------------------------------------------------
class ColdEngine:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="mlp-cold-", dir="/var/tmp"))
        self.sock = self.dir / "podman.sock"
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> str:
        import docker

        self.log = open(self.dir / "service.log", "ab")
        self.proc = subprocess.Popen(
            ["podman", "--root", str(self.dir / "storage"), "--runroot", str(self.dir / "run"),
             "system", "service", "--time=0", f"unix://{self.sock}"],
            stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True)
        deadline = time.time() + 30
        while True:
            try:
                docker.DockerClient(base_url=f"unix://{self.sock}").close()
                return f"unix://{self.sock}"
            except Exception:
                if time.time() > deadline or self.proc.poll() is not None:
                    raise RuntimeError((self.dir / "service.log").read_text())
                time.sleep(0.2)

    def __exit__(self, *exc) -> None:
        assert self.proc is not None
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()
        subprocess.run(["podman", "--root", str(self.dir / "storage"), "--runroot", str(self.dir / "run"),
                        "system", "reset", "--force"], capture_output=True)
        shutil.rmtree(self.dir, ignore_errors=True)


def bench(name: str, base: str, registry: str, folder: Path, repeat: int) -> dict:
    ctx = context_for(base, folder)
    layer_runs = []
    for _ in range(repeat):
        target = ImageRef(registry, f"mlpbench/{uuid.uuid4().hex[:10]}", "1")
        layer_runs.append(build_layer(ctx, target, registry))
    best = min(layer_runs, key=lambda r: r.seconds)
    with ColdEngine() as host:
        target = ImageRef(registry, f"mlpbench/{uuid.uuid4().hex[:10]}", "1")
        started = time.monotonic()
        build_engine(ctx, target, registry, docker_host=host)
        engine_seconds = time.monotonic() - started
    base_size = sum(layer["size"] for layer in RegistryClient(registry).get_manifest(
        ImageRef.parse(base).repository, ImageRef.parse(base).reference)[0]["layers"])
    return {"base": name, "base_ref": base, "base_compressed_bytes": base_size,
            "layer_seconds": best.seconds, "layer_seconds_all": [round(r.seconds, 3) for r in layer_runs],
            "bytes_uploaded": best.bytes_uploaded, "code_layer_bytes": best.layer_size,
            "engine_cold_seconds": engine_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-gb", type=float, default=0, help="also bench a base with an N GB extra layer")
    parser.add_argument("--gpu", action="store_true", help="also bench the gpu environment image (≈ 3 GB)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    env = registries()
    registry, base = env["MLP_TEST_REGISTRY"], env["MLP_TEST_BASE_REF"]
    bases = [("small", base)]
    if args.gpu:
        gpu_image = os.environ.get("MLP_TEST_IMAGE_GPU")
        if not gpu_image:
            parser.error("--gpu needs MLP_TEST_IMAGE_GPU (make images; source .testenv/env.sh)")
        bases.append(("gpu environment", push_local_image(registry, gpu_image, "mlplatform/gpu")))
    if args.large_gb:
        bases.append((f"large ({args.large_gb:g} GB more)", make_large_base(registry, base, args.large_gb)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = notebook_folder(Path(tmp))
        results = [bench(name, ref, registry, folder, args.repeat) for name, ref in bases]
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(f"\n{'base':<22}{'base (compr.)':>15}{'layer s':>10}{'engine cold s':>15}{'speed-up':>10}"
          f"{'uploaded B':>12}{'code layer B':>14}{'ratio':>7}")
    for r in results:
        print(f"{r['base']:<22}{r['base_compressed_bytes'] / 1e6:>12.0f} MB{r['layer_seconds']:>10.3f}"
              f"{r['engine_cold_seconds']:>15.1f}{r['engine_cold_seconds'] / r['layer_seconds']:>9.0f}x"
              f"{r['bytes_uploaded']:>12}{r['code_layer_bytes']:>14}"
              f"{r['bytes_uploaded'] / r['code_layer_bytes']:>7.3f}")
    print("layer: best of", args.repeat, "runs:", "; ".join(f"{r['base']}: {r['layer_seconds_all']}" for r in results))
    print("goals: layer ≤ 2 s on every base; ≥ 5× the cold engine on the small base, ≥ 50× on a ≥ 3 GB one; "
          "uploaded ≤ 1.1× the code layer")
    for r in results:
        ratio = r["bytes_uploaded"] / r["code_layer_bytes"]
        print(f"  {r['base']}: layer {r['layer_seconds']:.3f} s {'≤' if r['layer_seconds'] <= 2 else '>'} 2 s; "
              f"uploaded {ratio:.3f}× the code layer ({'met' if ratio <= 1.1 else 'NOT met'})")


if __name__ == "__main__":
    main()
