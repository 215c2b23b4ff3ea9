"""The spine end to end through the `mlp` CLI: save → train → metrics → logs → batch → deploy → invoke."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from notebooks import IRIS_ROWS, realistic_notebook


def run_flow(server, tmp_path: Path) -> None:
    nb = tmp_path / "iris.ipynb"
    nb.write_text(realistic_notebook())

    saved = server.mlp_json("models", "save", str(nb), "--name", "iris")
    assert saved["version"] == "1"
    assert {h["name"]: h["default"] for h in saved["hyperparameters"]} == {
        "C": 1.0, "max_iter": 200, "penalty": "l2", "fit_intercept": True}
    assert saved["methods"] == ["batch_predict", "init_predict", "predict", "train"]
    source = server.mlp("models", "show", "iris:1", "--source").stdout
    assert "read_csv" not in source and "%matplotlib" not in source and "def load_data" in source

    run = server.mlp_json("train", "iris", "--hp", "C=0.5", "--hp", "max_iter=300", "--wait")
    assert run["status"] == "succeeded", run
    assert run["hyperparameters"]["C"] == 0.5 and isinstance(run["hyperparameters"]["C"], float)
    assert run["hyperparameters"]["max_iter"] == 300
    assert run["metrics"]["accuracy"] > 0.9
    assert run["metrics"]["loss"] == pytest.approx(1 / 3)
    assert run["launched_by"] == "admin" and run["content_hash"] == saved["content_hash"]

    logs = server.mlp("runs", "logs", run["id"]).stdout
    assert "trained with C=0.5" in logs

    metrics = server.mlp_json("runs", "metrics", run["id"])["items"]
    assert [m["step"] for m in metrics if m["name"] == "loss"] == [0, 1, 2]

    inputs = tmp_path / "batch" / "in.jsonl"
    inputs.parent.mkdir()
    inputs.write_text("".join(json.dumps(row) + "\n" for row in IRIS_ROWS))
    outputs = tmp_path / "batch" / "out" / "predictions.jsonl"
    batch = server.mlp_json("predict-batch", "iris", "--run", run["id"], "--input", str(inputs),
                            "--output", str(outputs), "--wait")
    assert batch["status"] == "succeeded", batch
    predictions = [json.loads(line) for line in outputs.read_text().splitlines()]
    assert len(predictions) == len(IRIS_ROWS)
    assert predictions[0]["species"] == "setosa" and predictions[1]["species"] == "virginica"

    dep = server.mlp_json("deploy", "iris", "--run", run["id"], "--wait")
    assert dep["status"] == "ready", dep
    answer = httpx.post(dep["url"] + "/invocations", json=IRIS_ROWS[0], timeout=30)
    assert answer.status_code == 200 and answer.json() == {"label": 0, "species": "setosa"}
    bad = httpx.post(dep["url"] + "/invocations", content=b"{not json", timeout=30)
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["message"]

    listed = server.mlp_json("deployments", "list")["items"]
    assert [d["name"] for d in listed] == ["iris"]
    server.mlp("deployments", "delete", "iris")
    assert server.mlp_json("deployments", "list")["items"] == []
    with pytest.raises(httpx.HTTPError):
        httpx.get(dep["url"] + "/ping", timeout=2)


def test_flow_on_process_backend(mlp_server, tmp_path):
    run_flow(mlp_server, tmp_path)


@pytest.mark.docker
def test_flow_on_docker_backend_with_podman(docker_server, tmp_path):
    assert httpx.get(docker_server.url + "/api/v1/health").json()["backend"] == "docker"
    run_flow(docker_server, tmp_path)
