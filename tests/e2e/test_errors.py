"""Each bad input gets a clear message and a non-zero exit or 4xx, no traceback, no half-written record."""

from __future__ import annotations

import pytest

from notebooks import MODEL_CLASS, cell, notebook, realistic_notebook


@pytest.fixture
def saved(mlp_server, tmp_path):
    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())
    mlp_server.mlp("models", "save", str(nb), "--name", "iris")
    return mlp_server


def assert_clean_failure(proc, *fragments: str) -> None:
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    line = proc.stderr.strip().splitlines()[-1]
    assert line.startswith("error: ") or line.startswith("Error: "), proc.stderr
    for fragment in fragments:
        assert fragment in proc.stderr, proc.stderr


def models_count(server) -> int:
    with server.api() as api:
        return api.get("/models").json()["total"]


def test_notebook_without_model(mlp_server, tmp_path):
    nb = tmp_path / "nomodel.ipynb"
    nb.write_text(notebook(cell("import json\nx = 1")))
    proc = mlp_server.mlp("models", "save", str(nb), "--name", "nomodel", check=False)
    assert_clean_failure(proc, "class Model")
    assert models_count(mlp_server) == 0


def test_syntax_error_names_the_cell(mlp_server, tmp_path):
    nb = tmp_path / "broken.ipynb"
    nb.write_text(notebook(cell("import json"), cell("# fine"), cell("def f(:\n    pass"), cell(MODEL_CLASS)))
    proc = mlp_server.mlp("models", "save", str(nb), "--name", "broken", check=False)
    assert_clean_failure(proc, "cell 3")
    assert models_count(mlp_server) == 0


def test_unknown_hyperparameter(saved):
    proc = saved.mlp("train", "iris", "--hp", "gamma=2", check=False)
    assert_clean_failure(proc, "gamma", "C")
    with saved.api() as api:
        assert api.get("/runs").json()["total"] == 0


def test_value_that_does_not_coerce(saved):
    proc = saved.mlp("train", "iris", "--hp", "max_iter=lots", check=False)
    assert_clean_failure(proc, "max_iter", "int", "lots")
    with saved.api() as api:
        assert api.get("/runs").json()["total"] == 0


def test_action_whose_method_the_model_lacks(mlp_server, tmp_path):
    source = "class Model:\n    hyperparameters = {'a': 1}\n\n    def train(self):\n        pass\n"
    path = tmp_path / "trainonly.py"
    path.write_text(source)
    mlp_server.mlp("models", "save", str(path), "--name", "trainonly")
    run = mlp_server.mlp_json("train", "trainonly", "--wait")
    assert run["status"] == "succeeded"
    data = tmp_path / "in.jsonl"
    data.write_text("{}\n")
    proc = mlp_server.mlp("predict-batch", "trainonly", "--run", run["id"], "--input", str(data),
                          "--output", str(tmp_path / "out.jsonl"), check=False)
    assert_clean_failure(proc, "batch_predict")
    proc = mlp_server.mlp("deploy", "trainonly", "--run", run["id"], check=False)
    assert_clean_failure(proc, "predict")
    with mlp_server.api() as api:
        assert api.get("/runs").json()["total"] == 1
        assert api.get("/deployments").json()["total"] == 0


def test_wrong_token(saved):
    proc = saved.mlp("models", "list", token="not-a-token", check=False)
    assert_clean_failure(proc, "Invalid API token")
    with saved.api(token="not-a-token") as api:
        response = api.get("/models")
    assert response.status_code == 401 and response.json()["error"] == "unauthorized"


def test_another_users_run(saved):
    saved.mlp("users", "create", "alice")
    saved.mlp("users", "create", "bob")
    alice = saved.mlp("users", "token", "alice").stdout.strip()
    bob = saved.mlp("users", "token", "bob").stdout.strip()
    nb_path = saved.data_dir.parent / "alice.ipynb"
    nb_path.write_text(realistic_notebook())
    saved.mlp("models", "save", str(nb_path), "--name", "alice-iris", token=alice)
    run = saved.mlp_json("train", "alice-iris", "--wait", token=alice)
    for args in (("runs", "show", run["id"]), ("runs", "logs", run["id"]), ("runs", "cancel", run["id"]),
                 ("runs", "replicate", run["id"]), ("models", "show", "alice-iris")):
        proc = saved.mlp(*args, token=bob, check=False)
        assert_clean_failure(proc)
        assert "No " in proc.stderr
    assert saved.mlp_json("runs", "list", token=bob)["total"] == 0
    assert saved.mlp_json("runs", "list", token=alice)["total"] == 1
    # the admin sees everything
    assert saved.mlp_json("runs", "show", run["id"])["launched_by"] == "alice"
    # bob cannot take alice's model name
    proc = saved.mlp("models", "save", str(nb_path), "--name", "alice-iris", token=bob, check=False)
    assert_clean_failure(proc, "another user")


def test_run_token_only_reports_for_its_run(saved):
    import httpx
    with saved.api() as api:
        response = api.post("/runs", json={"model": "iris", "hyperparameters": {"C": "x"}})
    assert response.status_code == 400
    assert response.json()["details"]["name"] == "C"
    # bad JSON body
    with saved.api() as api:
        response = api.post("/runs", content=b"{nope")
        assert response.status_code == 400 and "not valid JSON" in response.json()["message"]
        response = api.get("/runs?limit=0")
        assert response.status_code == 400 and "limit" in response.json()["message"]
        response = api.get("/no-such-thing")
        assert response.status_code == 404 and response.json()["error"] == "not_found"
    assert httpx.get(saved.url + "/api/v1/runs").status_code == 401
