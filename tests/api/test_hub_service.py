"""The platform API as a JupyterHub service: a real `jupyterhub` process (the repo's
jupyter-config/jupyterhub_config.py) issues tokens; a real `mlp server` running as the hub service
`mlplatform` accepts those with the service scope, creates the user on first sight, maps hub admins
to platform admins, and refuses the rest with 401.

The hub's HTTP proxy (configurable-http-proxy, an npm program) is not needed: only the hub API is
used, so the extra config replaces the proxy with one that routes nothing.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port

ROOT = Path(__file__).resolve().parents[2]
SCOPE = "access:services!service=mlplatform"

EXTRA_CONFIG = '''
from jupyterhub.proxy import Proxy


class NoProxy(Proxy):
    """The hub API alone: no HTTP proxy process, no routes."""
    should_start = False

    async def add_route(self, routespec, target, data):
        pass

    async def delete_route(self, routespec):
        pass

    async def get_all_routes(self):
        return {{}}


c.JupyterHub.proxy_class = NoProxy
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = {hub_port}
c.JupyterHub.port = {public_port}
c.JupyterHub.db_url = "sqlite:///{dir}/jupyterhub.sqlite"
c.JupyterHub.cookie_secret_file = "{dir}/cookie_secret"
c.JupyterHub.pid_file = "{dir}/jupyterhub.pid"
c.Authenticator.allowed_users = {{"ann", "root", "admin"}}
c.Authenticator.admin_users = {{"root"}}
c.JupyterHub.services.append({{"name": "tester", "api_token": "{tester_token}"}})
c.JupyterHub.load_roles.append({{"name": "tester", "scopes": ["admin:users", "tokens"], "services": ["tester"]}})
'''


@pytest.fixture
def hub(tmp_path: Path, mlp_server_factory) -> Iterator[dict[str, str]]:
    service_token, tester_token = secrets.token_hex(16), secrets.token_hex(16)
    hub_port = free_port()
    api_url = f"http://127.0.0.1:{hub_port}/hub/api"
    server = mlp_server_factory(extra_env={
        "JUPYTERHUB_API_URL": api_url, "JUPYTERHUB_API_TOKEN": service_token,
        "JUPYTERHUB_SERVICE_NAME": "mlplatform"})
    hub_dir = tmp_path / "hub"
    hub_dir.mkdir()
    extra = hub_dir / "extra_config.py"
    extra.write_text(EXTRA_CONFIG.format(hub_port=hub_port, public_port=free_port(), dir=hub_dir,
                                         tester_token=tester_token))
    env = {**os.environ, "MLP_PLATFORM_URL": server.url, "MLP_SERVICE_API_TOKEN": service_token,
           "MLP_HUB_EXTRA_CONFIG": str(extra)}
    log_path = hub_dir / "hub.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(ROOT / "jupyter-config" / "jupyterhub_config.py")],
            cwd=hub_dir, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.time() + 90
        while True:
            if proc.poll() is not None:
                pytest.fail(f"jupyterhub exited {proc.returncode}:\n{log_path.read_text()}")
            try:
                if httpx.get(api_url + "/", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.time() > deadline:
                pytest.fail(f"jupyterhub did not answer:\n{log_path.read_text()}")
            time.sleep(0.3)
        yield {"api_url": api_url, "tester": tester_token, "mlp_url": server.url, "admin": server.token}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def hub_token(hub: dict[str, str], user: str, scopes: list[str]) -> str:
    resp = httpx.post(f"{hub['api_url']}/users/{user}/tokens", json={"scopes": scopes, "note": "test"},
                      headers={"Authorization": f"token {hub['tester']}"}, timeout=30)
    assert resp.status_code == 201, resp.text
    return resp.json()["token"]


def whoami(hub: dict[str, str], token: str) -> httpx.Response:
    return httpx.get(hub["mlp_url"] + "/api/v1/whoami", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def test_hub_tokens_as_platform_identities(hub: dict[str, str]) -> None:
    ann = hub_token(hub, "ann", [SCOPE])
    assert whoami(hub, ann).json() == {"name": "ann", "admin": False, "run_id": None}
    # `mlp` in a notebook: MLP_URL + the hub-issued token
    proc = subprocess.run([sys.executable, "-m", "mlplatform_server.cli", "whoami", "--json"], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "MLP_URL": hub["mlp_url"], "MLP_TOKEN": ann})
    assert proc.returncode == 0, proc.stderr
    assert '"name": "ann"' in proc.stdout
    # created on first sight: the platform admin sees the user
    again = httpx.post(hub["mlp_url"] + "/api/v1/users", json={"name": "ann"},
                       headers={"Authorization": f"Bearer {hub['admin']}"}, timeout=30)
    assert again.status_code == 409, again.text
    # hub admins are platform admins
    root = hub_token(hub, "root", [SCOPE])
    assert whoami(hub, root).json() == {"name": "root", "admin": True, "run_id": None}

    # refused: a hub token without the service scope, an unknown token
    no_scope = hub_token(hub, "ann", ["read:users:activity!user=ann"])
    resp = whoami(hub, no_scope)
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"
    resp = whoami(hub, "not-a-token-" + secrets.token_hex(8))
    assert resp.status_code == 401 and resp.json()["error"] == "unauthorized"
    # a hub user named as the platform's built-in admin account cannot become (or demote) it
    resp = whoami(hub, hub_token(hub, "admin", [SCOPE]))
    assert resp.status_code == 403 and "built-in admin" in resp.json()["message"]
    # the platform's own tokens still work beside the hub's
    assert whoami(hub, hub["admin"]).json()["admin"] is True
