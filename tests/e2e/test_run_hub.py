"""`make run` on one machine is JupyterHub (scripts/run.sh, jupyter-config/jupyterhub_local_config.py,
mlplatform_server/hub/local.py): started the way `make run` starts it (a subprocess, fresh data dir,
free ports), a user logs in over HTTP with the printed password, gets the environment × hardware
form (the GPU size disabled with its reason on this GPU-less machine), submits it, lands on a
running JupyterLab whose mlplatform extension answers, and `mlp whoami` with the hub-issued token
from that server's environment works against the platform API, the hub service."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlplatform_server.hub.local import gpu_count
from support import free_port, pids_with_env, stop_process_group, train_through_lab

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def local_hub(tmp_path: Path) -> Iterator[dict]:
    ports = {k: free_port() for k in ("MLP_PORT", "MLP_HUB_PORT", "MLP_HUB_API_PORT", "MLP_PROXY_API_PORT")}
    data = tmp_path / "data"
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "MLP_DATA_DIR": str(data), "MLP_BACKEND": "process"}
    for name in ("MLP_TOKEN", "MLP_URL", "MLP_RUN_MODE", "MLP_LAB_PORT", "JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL"):
        env.pop(name, None)
    proc = subprocess.Popen(["bash", str(ROOT / "scripts/run.sh")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=env, start_new_session=True)
    output = ""
    try:
        deadline = time.time() + 150
        while "Ctrl-C stops everything" not in output and time.time() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output += line
        assert "Ctrl-C stops everything" in output, output + _tail(data / "hub.log")
        yield {"output": output, "data": data, "hub": f"http://127.0.0.1:{ports['MLP_HUB_PORT']}",
               "api": f"http://127.0.0.1:{ports['MLP_PORT']}"}
    finally:
        stop_process_group(proc, timeout=60)
    for port in ports.values():
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/", timeout=2)


def _tail(path: Path) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-40:]) if path.exists() else ""


def _xsrf(client: httpx.Client, page: str) -> str:
    found = re.search(r'name="_xsrf" value="([^"]+)"', page)
    return found.group(1) if found else client.cookies.get("_xsrf", "")


def test_make_run_is_a_local_jupyterhub(local_hub):
    hub, data, output = local_hub["hub"], local_hub["data"], local_hub["output"]
    password = re.search(r"Password\s+(\S+)", output).group(1)
    password_file = data / "hub-password"
    assert password_file.read_text().strip() == password
    assert stat.S_IMODE(password_file.stat().st_mode) == 0o600

    with httpx.Client(base_url=hub, timeout=60, follow_redirects=True) as client:
        login = client.get("/hub/login")
        assert login.status_code == 200
        wrong = client.post("/hub/login?next=", data={"username": "ann", "password": "not-it",
                                                      "_xsrf": _xsrf(client, login.text)})
        assert "Invalid username or password" in wrong.text
        form = client.post("/hub/login?next=", data={"username": "ann", "password": password,
                                                     "_xsrf": _xsrf(client, wrong.text)})
        assert form.status_code == 200 and form.url.path == "/hub/spawn", (form.url, form.text[:500])

        # the form: environments and sizes from the platform config; unusable sizes disabled with a reason
        page = form.text
        assert re.search(r'<option value="python" selected>Python \(scikit-learn, xgboost, pandas\)', page)
        assert re.search(r'<option value="deep-learning">Deep learning \(PyTorch CPU, TensorBoard\)', page)
        assert re.search(r'<option value="cpu-small" selected>', page)
        assert '<option value="cpu-large">' in page
        gpu = re.search(r'<option value="gpu-1"([^>]*)>([^<]*)</option>', page)
        assert gpu is not None, page
        if gpu_count() == 0:
            assert "disabled" in gpu.group(1)
            assert "unavailable: no NVIDIA GPU on this machine" in gpu.group(2)
        else:  # a GPU machine: the size is still kept for the gpu-users group
            assert "disabled" in gpu.group(1) and "only for members of the group(s) gpu-users" in gpu.group(2)

        # a disabled size sent anyway is refused, naming it and why
        refused = client.post("/hub/spawn", data={"_xsrf": _xsrf(client, page), "profile": "mlplatform",
                                                  "environment": "python", "hardware": "gpu-1"})
        assert "gpu-1" in refused.text and "cannot be used here" in refused.text, re.findall(r"(?s)<p[^>]*error[^>]*>.*?</p>|spawn-error.{0,400}", refused.text)

        started = client.post("/hub/spawn", data={"_xsrf": _xsrf(client, page), "profile": "mlplatform",
                                                  "environment": "python", "hardware": "cpu-small"})
        assert started.status_code == 200, started.text[-2000:]
        deadline = time.time() + 180
        while time.time() < deadline:
            lab = client.get("/user/ann/lab")
            if lab.status_code == 200 and lab.url.path == "/user/ann/lab":
                break
            time.sleep(1)
        else:
            raise AssertionError(f"no JupyterLab for ann: {lab.status_code} {lab.url}\n{_tail(data / 'hub.log')}")
        assert "JupyterLab" in lab.text

        config = client.get("/user/ann/mlplatform/config")
        assert config.status_code == 200, config.text
        body = config.json()
        assert body["in_process"] is False and body["platform_url"] == local_hub["api"]
        assert body["user"]["name"] == "ann" and not body["user"]["admin"]

        # the environment has tensorboard: true, so the launcher item is there and TensorBoard answers
        info = client.get("/user/ann/server-proxy/servers-info")
        assert info.status_code == 200, info.text
        [board] = [s for s in info.json()["server_processes"] if s["name"] == "tensorboard"]
        assert board["launcher_entry"]["enabled"] is True
        page = client.get("/user/ann/tensorboard/", timeout=180)
        assert page.status_code == 200 and "TensorBoard" in page.text, page.text[:300]

    # `mlp` in the user's server is preconfigured with the platform URL and a hub-issued token
    [pid] = pids_with_env(b"JUPYTERHUB_USER=ann\0", b"MLP_TOKEN=")[:1] or [None]
    assert pid is not None, "no process of ann's server"
    server_env = dict(item.split("=", 1) for item in
                      Path(f"/proc/{pid}/environ").read_text().split("\0") if "=" in item)
    assert server_env["MLP_URL"] == local_hub["api"]
    assert server_env["MLP_ENVIRONMENT"] == "python" and server_env["MLP_HARDWARE"] == "cpu-small"
    assert server_env["MLP_TENSORBOARD"] == "1" and server_env["MLP_PUBLIC_URL"] == hub
    admin_token = (data / "admin-token").read_text().strip()
    assert server_env["MLP_TOKEN"] not in (admin_token, (data / "service-token").read_text().strip())
    whoami = subprocess.run([str(Path(sys.executable).with_name("mlp")), "whoami", "--json"], capture_output=True,
                            text=True, timeout=60,
                            env={**os.environ, "MLP_URL": server_env["MLP_URL"], "MLP_TOKEN": server_env["MLP_TOKEN"]})
    assert whoami.returncode == 0, whoami.stderr
    assert json.loads(whoami.stdout)["name"] == "ann"
    assert json.loads(whoami.stdout)["admin"] is False

    # a run of ann's that wrote event files; `mlp tensorboard RUN` in her server's environment
    (data / "home" / "ann" / "model.py").write_text(MODEL)
    user_api = f"{hub}/user/ann/"
    with httpx.Client(base_url=user_api, timeout=120,
                      headers={"Authorization": f"token {server_env['JUPYTERHUB_API_TOKEN']}"}) as http:
        body = train_through_lab(http)
        assert body["status"] == "succeeded" and body["launched_by"] == "ann", body
        run_id = body["id"]
    board = subprocess.run([str(Path(sys.executable).with_name("mlp")), "tensorboard", run_id, "--json"],
                           capture_output=True, text=True, timeout=200, env=server_env)
    assert board.returncode == 0, board.stderr
    url = json.loads(board.stdout)["url"]
    assert url == f"{hub}/user/ann/mlplatform/tensorboard/{run_id}/"
    page = httpx.get(url, headers={"Authorization": f"token {server_env['JUPYTERHUB_API_TOKEN']}"}, timeout=60)
    assert page.status_code == 200 and "TensorBoard" in page.text


MODEL = '''
import time


class Model:
    def train(self):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        writer = EventFileWriter(str(self.artifacts / "logs"))
        value = summary_pb2.Summary.Value(tag="loss", simple_value=0.5)
        writer.add_event(event_pb2.Event(wall_time=time.time(), step=0, summary=summary_pb2.Summary(value=[value])))
        writer.close()
'''


def test_make_run_hub_in_chromium(local_hub):
    """The same in a real browser (bonus to the HTTP test above): login, the form with the GPU size
    disabled, JupyterLab, and the TensorBoard launcher item opening TensorBoard in a Lab tab."""
    playwright = ROOT / "labextension" / "node_modules" / "playwright-core"
    chromium = os.environ.get("MLP_TEST_CHROMIUM", "/usr/bin/chromium")
    if not playwright.is_dir() or not Path(chromium).exists():
        pytest.fail(f"browser rig incomplete: {playwright} (make install) and {chromium} (install-system.sh)")
    out = ROOT / "test-output" / "hub"
    password = re.search(r"Password\s+(\S+)", local_hub["output"]).group(1)
    proc = subprocess.run(
        ["node", str(ROOT / "tests" / "e2e" / "hub_browser.mjs")], capture_output=True, text=True, timeout=420,
        env={**os.environ, "PLAYWRIGHT_FROM": str(playwright), "HUB_URL": local_hub["hub"], "HUB_USER": "bea",
             "HUB_PASSWORD": password, "OUT_DIR": str(out), "CHROMIUM": chromium})
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "hub browser flow passed" in output, \
        output[-4000:] + "\n--- hub log ---\n" + _tail(local_hub["data"] / "hub.log")
    form = json.loads(next(line for line in proc.stdout.splitlines() if "gpu_disabled" in line))
    if gpu_count() == 0:
        assert form["gpu_disabled"] is True and "no NVIDIA GPU on this machine" in form["gpu_label"]
    assert (out / "03-tensorboard.png").is_file()
