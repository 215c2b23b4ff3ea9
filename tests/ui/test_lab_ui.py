"""The JupyterLab extension in a real browser: Debian's Chromium driven by playwright-core (Node).

A real ``jupyter lab`` with the extension and the in-process platform on the process backend;
labextension/test/ui/lab-flow.mjs clicks through save as model → containerize (layer build
pushed to the test registry, digest shown) → train (one hyperparameter
overridden) → run succeeds with its metric → a bad value refused with the server's message →
deploy → invoke from the "try it" box. Screenshots of each step go to test-output/ui/.
The platform state the browser produced is then checked through the Jupyter server's relay.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from notebooks import realistic_notebook
from support import free_port, registry_env, stop_process_group, stop_stray_processes

ROOT = Path(__file__).resolve().parents[2]
LABEXT = ROOT / "labextension"
CHROMIUM = os.environ.get("MLP_TEST_CHROMIUM", "/usr/bin/chromium")
OUT_DIR = ROOT / "test-output" / "ui"
TOKEN = "ui-test-token-0123456789"


def _require_rig() -> None:
    missing = []
    if not Path(CHROMIUM).exists():
        missing.append(f"Chromium at {CHROMIUM} (scripts/install-system.sh installs Debian's 'chromium')")
    if not (LABEXT / "node_modules" / "playwright-core").is_dir():
        missing.append("labextension/node_modules/playwright-core ('make install' runs npm install there)")
    if shutil.which("node") is None:
        missing.append("node")
    if missing:
        pytest.fail("UI test rig incomplete: " + "; ".join(missing))


@pytest.fixture
def lab(tmp_path):
    """`jupyter lab` on a free port, in-process platform on the process backend, one notebook."""
    _require_rig()
    root = tmp_path / "work"
    root.mkdir()
    (root / "iris.ipynb").write_text(realistic_notebook())
    home = tmp_path / "home"
    home.mkdir()
    # Containerize pushes to the environment image's registry: the test registry's copy of it.
    platform = yaml.safe_load((ROOT / "mlplatform_server" / "default_platform.yaml").read_text())
    platform["environments"][0]["image"] = registry_env()["MLP_TEST_BASE_REF"]
    (tmp_path / "platform.yaml").write_text(yaml.safe_dump(platform))
    # No "would you like news?" prompt over the page.
    notification = tmp_path / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notification.parent.mkdir(parents=True)
    notification.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = free_port()
    env = {
        **os.environ,
        "HOME": str(home),
        "JUPYTER_CONFIG_DIR": str(home / ".jupyter"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "MLP_URL": "",
        "MLP_BACKEND": "process",
        "MLP_DATA_DIR": str(tmp_path / "mlp-data"),
        "MLP_DB_URL": "",
        "MLP_CONFIG": str(tmp_path / "platform.yaml"),
    }
    log = (tmp_path / "lab.log").open("w")
    proc = subprocess.Popen(
        [
            sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
            f"--ServerApp.root_dir={root}", f"--IdentityProvider.token={TOKEN}",
            f"--LabApp.workspaces_dir={tmp_path / 'workspaces'}",
            f"--LabApp.user_settings_dir={tmp_path / 'settings'}",
            "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            *(["--allow-root"] if os.geteuid() == 0 else []),
        ],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while True:
        if proc.poll() is not None:
            pytest.fail(f"jupyter lab exited {proc.returncode}:\n{(tmp_path / 'lab.log').read_text()[-4000:]}")
        try:
            if httpx.get(f"{base}/api/status", params={"token": TOKEN}, timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"jupyter lab did not answer:\n{(tmp_path / 'lab.log').read_text()[-4000:]}")
        time.sleep(0.5)
    try:
        yield {"base": base, "tmp": tmp_path}
    finally:
        stop_process_group(proc, timeout=20)
        log.close()
        stop_stray_processes(tmp_path)


def test_researcher_flow_in_chromium(lab):
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    for old in OUT_DIR.glob("*.png"):
        old.unlink()
    proc = subprocess.run(
        ["node", str(LABEXT / "test" / "ui" / "lab-flow.mjs")],
        cwd=LABEXT,
        env={**os.environ, "LAB_URL": f"{lab['base']}/lab", "LAB_TOKEN": TOKEN, "NOTEBOOK": "iris.ipynb",
             "OUT_DIR": str(OUT_DIR), "CHROMIUM": CHROMIUM},
        capture_output=True, text=True, timeout=540,
    )
    output = proc.stdout + proc.stderr
    print(output)  # the steps, the refusal message and the screenshots (pytest -s shows them)
    assert proc.returncode == 0, f"UI flow failed (screenshots in {OUT_DIR}):\n{output[-6000:]}\n" \
        f"--- jupyter lab log ---\n{(lab['tmp'] / 'lab.log').read_text()[-4000:]}"
    assert "UI flow passed" in output
    shots = sorted(p.name for p in OUT_DIR.glob("*.png"))
    for step in ("notebook", "save-dialog", "saved-model", "containerize-dialog", "containerized", "train-form",
                 "run-succeeded",
                 "bad-hyperparameter", "deploy-dialog", "deployed", "invoked"):
        assert any(step in name for name in shots), f"no screenshot of {step}: {shots}"

    # What the clicks produced, read back through the Jupyter server's relay.
    with httpx.Client(base_url=f"{lab['base']}/mlplatform/api/", headers={"Authorization": f"token {TOKEN}"}) as api:
        image = api.get("models/iris/versions/1").json()["image"]
        assert image and "/mlplatform/models/iris@sha256:" in image and image in output  # the digest shown
        runs = api.get("runs").json()["items"]
        assert len(runs) == 1, runs  # the refused value started nothing
        run = runs[0]
        assert run["status"] == "succeeded" and run["model"] == "iris"
        assert run["hyperparameters"]["C"] == 0.5 and run["hyperparameters"]["max_iter"] == 200
        assert 0.5 < run["metrics"]["accuracy"] <= 1.0
        dep = api.get("deployments/iris").json()
        assert dep["status"] == "ready" and dep["run_id"] == run["id"]
        refused = api.post("runs", json={"model": "iris", "hyperparameters": {"max_iter": 2.5}})
        assert refused.status_code == 400
        assert refused.json()["message"] in output  # the browser showed exactly the server's message
        invoked = httpx.post(f"{lab['base']}/mlplatform/invoke/iris", headers={"Authorization": f"token {TOKEN}"},
                             json={"sepal_length": 6.9, "sepal_width": 3.1, "petal_length": 5.4, "petal_width": 2.1})
        assert invoked.status_code == 200 and invoked.json()["species"] == "virginica", invoked.text
    print(json.dumps({"screenshots": shots}))
