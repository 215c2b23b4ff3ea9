"""Containerize end to end through the `mlp` CLI and a real `mlp server --backend docker` with a
registry (MLP_REGISTRY / MLP_REGISTRY_AUTH, the env forms of --registry / --registry-auth):
save → `mlp build` (layer) → the version records the image by digest → `mlp train` runs in a
container of that image → deploy and invoke. Then the bad inputs: clear errors, nothing recorded.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from notebooks import IRIS_ROWS, cell, notebook, realistic_notebook
from support import free_port, private_podman, registry_env

pytestmark = pytest.mark.docker
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def registries() -> dict[str, str]:
    return registry_env()


@pytest.fixture(scope="module")
def engine_host():
    """A Podman API service of our own (see support.private_podman)."""
    with private_podman("mlpe") as url:
        yield url


def start_server(factory, tmp_path: Path, engine_host: str, base_ref: str, registry: str,
                 auth_file: str | None = None, more_environments: list[dict] | tuple = ()):
    config = tmp_path / f"platform-{uuid.uuid4().hex[:6]}.yaml"
    config.write_text(yaml.safe_dump({
        "environments": [{"name": "python", "image": base_ref, "default": True},
                         {"name": "local", "image": "localhost/mlplatform/python:latest"},
                         *more_environments],
        "hardware": [{"name": "cpu-small", "cpu": 1, "memory": "1Gi", "default": True}],
    }))
    env = {"DOCKER_HOST": engine_host, "MLP_REGISTRY": registry}
    if auth_file:
        env["MLP_REGISTRY_AUTH"] = auth_file
    return factory(backend="docker", config=config, extra_env=env)


def save_iris(server, tmp_path: Path, name: str = "iris") -> Path:
    folder = tmp_path / "project"
    folder.mkdir(exist_ok=True)
    nb = folder / "iris.ipynb"
    nb.write_text(realistic_notebook())
    (folder / "notes.md").write_text("# iris\n")
    (folder / ".mlpignore").write_text("data/\n")
    server.mlp_json("models", "save", str(nb), "--name", name)
    return folder


def version_image(server, name: str = "iris", version: str = "1") -> str | None:
    with server.api() as api:
        return api.get(f"/models/{name}/versions/{version}").json()["image"]


def test_build_then_train_and_serve_from_the_image(mlp_server_factory, registries, engine_host, tmp_path):
    registry = registries["MLP_TEST_REGISTRY"]
    server = start_server(mlp_server_factory, tmp_path, engine_host, registries["MLP_TEST_BASE_REF"], registry)
    folder = save_iris(server, tmp_path)

    dockerfile = server.mlp("build", "iris:1", "--context", str(folder), "--dockerfile").stdout
    assert f"FROM {registries['MLP_TEST_BASE_REF']}" in dockerfile and "COPY code/ /mlp/code/" in dockerfile
    assert "notes.md" in dockerfile and "iris.ipynb" in dockerfile

    start = time.monotonic()
    built = server.mlp_json("build", "iris", "--context", str(folder))
    elapsed = time.monotonic() - start
    assert built["builder"] == "layer" and built["image"].startswith(f"{registry}/mlplatform/models/iris@sha256:")
    assert built["bytes_uploaded"] <= built["layer_size"] + 8192  # layer + config + manifest, never the base
    print(f"\nmlp build (layer) took {elapsed:.2f}s end to end (server side {built['seconds']}s), "
          f"{built['bytes_uploaded']} bytes uploaded, code layer {built['layer_size']} bytes")
    assert version_image(server) == built["image"]
    again = server.mlp_json("build", "iris:1", "--context", str(folder), "--builder", "layer")
    assert again["image"] == built["image"]

    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{built['image']}"],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["Labels"]["org.opencontainers.image.title"] == "iris"
    assert info["Labels"]["org.opencontainers.image.version"] == "1"

    run = server.mlp_json("train", "iris", "--hp", "C=0.5", "--wait")
    assert run["status"] == "succeeded", run
    assert run["image"] == built["image"] and run["image_digest"] == built["image"].split("@", 1)[1]
    assert run["metrics"]["accuracy"] > 0.9

    dep = server.mlp_json("deploy", "iris", "--run", run["id"], "--wait")
    assert dep["status"] == "ready", dep
    answer = httpx.post(dep["url"] + "/invocations", json=IRIS_ROWS[0], timeout=30)
    assert answer.status_code == 200 and answer.json() == {"label": 0, "species": "setosa"}
    server.mlp("deployments", "delete", "iris")


WORDS_MODEL = '''
class Model:
    hyperparameters = {"factor": 2}

    def train(self):
        words = json.loads((Path(__file__).parent / "data" / "vocab.json").read_text())
        print(f"vocabulary of {len(words)} words from the image")
        self.log_metric("words", float(len(words)))
        (self.artifacts / "count.txt").write_text(str(len(words)))

    def init_predict(self):
        self.count = int((self.artifacts / "count.txt").read_text())
        self.words = json.loads((Path(__file__).parent / "data" / "vocab.json").read_text())

    def predict(self, features):
        return {"known": features["word"] in self.words, "count": self.count * self.hyperparameters["factor"]}
'''


def test_the_notebook_folder_files_are_in_the_image_at_run_time(mlp_server_factory, registries, engine_host,
                                                                 tmp_path):
    """A model reading a file of its notebook's folder: it trains and serves only from the built
    image (the docker backend mounts nothing over /mlp/code for the version's own image)."""
    server = start_server(mlp_server_factory, tmp_path, engine_host, registries["MLP_TEST_BASE_REF"],
                          registries["MLP_TEST_REGISTRY"])
    folder = tmp_path / "words"
    (folder / "data").mkdir(parents=True)
    (folder / "data" / "vocab.json").write_text(json.dumps(["alpha", "beta", "gamma"]))
    (folder / "data" / "raw-dump.csv").write_text("x" * 1000)
    (folder / ".gitignore").write_text("*.csv\n")
    nb = folder / "words.ipynb"
    nb.write_text(notebook(cell("import json\nfrom pathlib import Path"), cell(WORDS_MODEL)))
    server.mlp_json("models", "save", str(nb), "--name", "words")
    built = server.mlp_json("build", "words", "--context", str(folder))
    shown = server.mlp_json("build", "words", "--context", str(folder), "--dockerfile")
    assert "data/vocab.json" in shown["files"] and "data/raw-dump.csv" not in shown["files"]

    run = server.mlp_json("train", "words", "--wait")
    assert run["status"] == "succeeded", server.mlp("runs", "logs", run["id"]).stdout
    assert run["image"] == built["image"] and run["metrics"]["words"] == 3
    dep = server.mlp_json("deploy", "words", "--run", run["id"], "--wait")
    assert dep["status"] == "ready", dep
    answer = httpx.post(dep["url"] + "/invocations", json={"word": "beta"}, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"known": True, "count": 6}
    server.mlp("deployments", "delete", "words")


TORCH_MODEL = '''
class Model:
    hyperparameters = {"lr": 0.1, "steps": 300}

    def train(self):
        torch.manual_seed(0)
        x = torch.linspace(-1, 1, 64).unsqueeze(1)
        y = 3 * x + 0.5
        net = torch.nn.Linear(1, 1)
        optimizer = torch.optim.SGD(net.parameters(), lr=self.hyperparameters["lr"])
        for _ in range(self.hyperparameters["steps"]):
            optimizer.zero_grad()
            loss = torch.nn.functional.mse_loss(net(x), y)
            loss.backward()
            optimizer.step()
        self.log_metric("mse", loss.item())
        torch.save(net.state_dict(), self.artifacts / "net.pt")

    def init_predict(self):
        self.net = torch.nn.Linear(1, 1)
        self.net.load_state_dict(torch.load(self.artifacts / "net.pt"))

    def predict(self, features):
        with torch.no_grad():
            return {"y": round(float(self.net(torch.tensor([[float(features["x"])]]))), 2)}
'''


def test_a_pytorch_model_trains_and_serves_on_the_deep_learning_environment(mlp_server_factory, registries,
                                                                            engine_host, tmp_path):
    """The deep-learning environment image (images/deep-learning, pushed by scripts/registry.sh):
    containerized with the layer builder, trained and served in Podman with PyTorch from the image
    (the host's Python has no torch)."""
    dl_ref = registries.get("MLP_TEST_DEEP_LEARNING_REF")
    if not dl_ref:
        pytest.fail("scripts/registry.sh pushed no deep-learning image: run `make images`")
    server = start_server(mlp_server_factory, tmp_path, engine_host, registries["MLP_TEST_BASE_REF"],
                          registries["MLP_TEST_REGISTRY"],
                          more_environments=[{"name": "deep-learning", "image": dl_ref}])
    folder = tmp_path / "line"
    folder.mkdir()
    nb = folder / "line.ipynb"
    nb.write_text(notebook(cell("import torch"), cell(TORCH_MODEL)))
    server.mlp_json("models", "save", str(nb), "--name", "line")
    built = server.mlp_json("build", "line", "--env", "deep-learning", "--context", str(folder))
    info = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{built['image']}"],
                                     capture_output=True, text=True, check=True).stdout)
    base = json.loads(subprocess.run(["skopeo", "inspect", "--tls-verify=false", f"docker://{dl_ref}"],
                                     capture_output=True, text=True, check=True).stdout)
    assert info["Layers"][:-1] == base["Layers"] and len(info["Layers"]) == len(base["Layers"]) + 1

    run = server.mlp_json("train", "line", "--hp", "steps=400", "--wait")
    assert run["status"] == "succeeded", server.mlp("runs", "logs", run["id"]).stdout
    assert run["image"] == built["image"] and run["metrics"]["mse"] < 1e-4
    dep = server.mlp_json("deploy", "line", "--run", run["id"], "--wait")
    assert dep["status"] == "ready", dep
    answer = httpx.post(dep["url"] + "/invocations", json={"x": 2}, timeout=30)
    assert answer.status_code == 200 and answer.json() == {"y": 6.5}, answer.text
    server.mlp("deployments", "delete", "line")


def assert_clean_failure(proc, *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    assert proc.stderr.strip().splitlines()[-1].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def test_bad_inputs_give_clear_errors_and_record_nothing(mlp_server_factory, registries, engine_host, tmp_path):
    registry, base = registries["MLP_TEST_REGISTRY"], registries["MLP_TEST_BASE_REF"]
    server = start_server(mlp_server_factory, tmp_path, engine_host, base, registry)
    folder = save_iris(server, tmp_path)

    assert_clean_failure(server.mlp("build", "iris", "--env", "nope", check=False),
                         "Unknown environment 'nope'", "python")
    assert_clean_failure(server.mlp("build", "iris", "--env", "local", "--builder", "layer", check=False),
                         "is in localhost, not in", "push the environment image there")
    big = folder / "weights.bin"
    with open(big, "wb") as fh:  # sparse: 60 MiB on paper
        fh.truncate(60 * 1024 * 1024)
    assert_clean_failure(server.mlp("build", "iris", "--context", str(folder), check=False),
                         "larger than the cap of 50.0 MiB", "weights.bin", ".mlpignore")
    with server.api() as api:
        r = api.post("/models/iris/versions/1/build", json={"context_dir": str(folder)})
        assert r.status_code == 413 and r.json()["error"] == "context_too_large"
        r = api.post("/models/iris/versions/1/build", json={"builder": "kaniko"})
        assert r.status_code == 400 and "Unknown builder 'kaniko'" in r.json()["message"]
        r = api.post("/models/iris/versions/1/build", json={"buildr": "layer"})  # a typo is not ignored
        assert r.status_code == 400 and "Unknown field(s) buildr" in r.json()["message"], r.text
        r = api.post("/models/iris/versions/1/build", json={"builder": ["layer"]})
        assert r.status_code == 400 and r.json()["message"] == "'builder' must be a string", r.text
    big.unlink()
    assert version_image(server) is None

    # The same data dir, the server restarted against other registries (the factory's servers share it).
    server.stop()

    # wrong credentials on the htpasswd registry: 502, nothing recorded
    auth_registry = registries["MLP_TEST_REGISTRY_AUTH"]
    wrong = tmp_path / "wrong-config.json"
    wrong.write_text(json.dumps({"auths": {auth_registry: {"auth": base64.b64encode(b"mlp:nope").decode()}}}))
    (tmp_path / "a").mkdir()
    auth_server = start_server(mlp_server_factory, tmp_path / "a", engine_host, base.replace(registry, auth_registry),
                               auth_registry, str(wrong))
    save_iris(auth_server, tmp_path / "a")  # the same content: version 1 again
    assert_clean_failure(auth_server.mlp("build", "iris", check=False), "refused the credentials", "wrong-config.json")
    with auth_server.api() as api:
        r = api.post("/models/iris/versions/1/build", json={})
        assert r.status_code == 502 and r.json()["error"] == "registry_auth"
    assert version_image(auth_server) is None

    auth_server.stop()

    # unreachable registry: 502 with the address
    dead = f"127.0.0.1:{free_port()}"
    (tmp_path / "d").mkdir()
    dead_server = start_server(mlp_server_factory, tmp_path / "d", engine_host, f"{dead}/mlplatform/python:x", dead)
    save_iris(dead_server, tmp_path / "d")
    assert_clean_failure(dead_server.mlp("build", "iris", check=False), f"Cannot reach the registry at http://{dead}")
    assert version_image(dead_server) is None
