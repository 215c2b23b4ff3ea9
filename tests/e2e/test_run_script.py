"""`make run`'s script in lab mode (MLP_RUN_MODE=lab): the platform API and JupyterLab with the extension
answer at the printed URLs."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import httpx

from support import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_run_script_starts_api_and_lab(tmp_path):
    port, lab_port = free_port(), free_port()
    env = {**os.environ, "MLP_PORT": str(port), "MLP_LAB_PORT": str(lab_port),
           "MLP_DATA_DIR": str(tmp_path / "data"), "MLP_BACKEND": "process", "MLP_NOTEBOOK_DIR": str(tmp_path),
           "MLP_RUN_MODE": "lab"}  # the hub mode: tests/e2e/test_run_hub.py
    env.pop("MLP_TOKEN", None)
    env.pop("MLP_URL", None)
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/run.sh")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    try:
        output = ""
        deadline = time.time() + 120
        while "Ctrl-C stops both" not in output and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output += line
        assert "Ctrl-C stops both" in output, output
        lab_url = re.search(r"JupyterLab\s+(http://\S+)", output).group(1)
        api_url = re.search(r"Platform API\s+(http://\S+)", output).group(1)
        assert httpx.get(lab_url, timeout=30).status_code == 200
        token = (tmp_path / "data" / "admin-token").read_text().strip()
        assert httpx.get(api_url + "/whoami", headers={"Authorization": f"Bearer {token}"}).json()["admin"]
        lab_token = lab_url.split("token=")[1]
        config = httpx.get(f"http://127.0.0.1:{lab_port}/mlplatform/config", params={"token": lab_token}, timeout=30)
        assert config.status_code == 200, config.text
        assert config.json()["platform_url"] == f"http://127.0.0.1:{port}"
        assert config.json()["user"]["name"] == "admin"
        assert token not in config.text
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
    for p in (port, lab_port):
        try:
            httpx.get(f"http://127.0.0.1:{p}/", timeout=2)
            raise AssertionError(f"port {p} still answers after stop")
        except httpx.ConnectError:
            pass
