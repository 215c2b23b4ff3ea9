"""`--builder buildkit` is a Kubernetes Job: on another backend it is a clear 400 (API) and a one-line
error (CLI), and `auto` keeps choosing engine for a requirements.txt there."""

from __future__ import annotations

from pathlib import Path

from support import save_with_requirements


def test_buildkit_is_refused_off_kubernetes(mlp_server, tmp_path: Path):
    folder = save_with_requirements(mlp_server, tmp_path)

    with mlp_server.api() as api:
        r = api.post("/models/iris/versions/1/build", json={"builder": "buildkit", "context_dir": str(folder)})
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["error"] == "invalid_input"
        assert "buildkit builder runs a BuildKit Job on Kubernetes" in body["message"]
        assert "process backend" in body["message"] and "--builder engine" in body["message"]
        shown = api.get("/models/iris/versions/1/build", params={"context_dir": str(folder)}).json()
        assert shown["builder"] == "engine"
        assert api.get("/models/iris/versions/1").json()["image"] is None

    proc = mlp_server.mlp("build", "iris", "--builder", "buildkit", check=False)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "error: The buildkit builder runs a BuildKit Job on Kubernetes, and this platform runs with the process "
        "backend: use --builder engine (or layer when there is no requirements.txt)"]
