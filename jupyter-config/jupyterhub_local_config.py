"""JupyterHub config for one machine (``make run``, scripts/run.sh; README "Quickstart").

Users log in with a shared password, pick an environment and a hardware size from the platform
config (GPU sizes disabled when the machine has no GPU) and get a JupyterLab server as a local
process (mlplatform_server/hub/local.py). The platform API (``mlp server``, started by run.sh)
is the hub service ``mlplatform``. Settings come from the environment (run.sh sets them):

  MLP_DATA_DIR           data directory: hub/ (SQLite, cookie secret), home/<user>, passwords
  MLP_HUB_PORT           public port (the proxy; default 8888)
  MLP_HUB_API_PORT       the hub's own port behind the proxy (default 8081)
  MLP_PROXY_API_PORT     configurable-http-proxy's API port (default 8001)
  MLP_PLATFORM_URL       the platform API (default http://127.0.0.1:8000)
  MLP_SERVICE_API_TOKEN  the platform API's token as a hub service
  MLP_HUB_PASSWORD       users' shared password; MLP_HUB_ADMIN_PASSWORD the admin's (user "admin")
  MLP_HUB_ENGINE         1 when the platform runs jobs in a Docker-compatible engine
  MLP_PLATFORM_CONFIG    platform.yaml (default: the shipped one)
  MLP_CHP                configurable-http-proxy (default: tools/hub/node_modules/.bin/)
"""

import os
from pathlib import Path

from mlplatform_server.hub.hub_config import configure_platform_service, platform_config_or_exit

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)

ROOT = Path(__file__).resolve().parents[1]

platform = platform_config_or_exit()

data_dir = Path(os.environ.get("MLP_DATA_DIR", ".mlp-data")).resolve()
hub_dir = data_dir / "hub"
hub_dir.mkdir(parents=True, exist_ok=True)
platform_url = os.environ.get("MLP_PLATFORM_URL", "http://127.0.0.1:8000").rstrip("/")

c.JupyterHub.ip = "127.0.0.1"
c.JupyterHub.port = int(os.environ.get("MLP_HUB_PORT", "8888"))
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = int(os.environ.get("MLP_HUB_API_PORT", "8081"))
c.JupyterHub.db_url = f"sqlite:///{hub_dir / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(hub_dir / "cookie_secret")
c.JupyterHub.pid_file = str(hub_dir / "jupyterhub.pid")
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{os.environ.get('MLP_PROXY_API_PORT', '8001')}"
c.ConfigurableHTTPProxy.pid_file = str(hub_dir / "proxy.pid")
c.ConfigurableHTTPProxy.command = [os.environ.get("MLP_CHP") or
                                   str(ROOT / "tools/hub/node_modules/.bin/configurable-http-proxy")]

# Log in: any user name with the shared password; "admin" (a platform admin) with its own.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["MLP_HUB_PASSWORD"]
c.SharedPasswordAuthenticator.admin_password = os.environ["MLP_HUB_ADMIN_PASSWORD"]
c.Authenticator.admin_users = {"admin"}
c.Authenticator.allow_all = True

# Notebook servers: local processes with the platform's environment × hardware form.
c.JupyterHub.spawner_class = "mlplatform_server.hub.local.LocalPlatformSpawner"
c.LocalPlatformSpawner.platform_config = platform
c.LocalPlatformSpawner.platform_url = platform_url
c.LocalPlatformSpawner.platform_data_dir = str(data_dir)
c.LocalPlatformSpawner.hub_public_url = f"http://127.0.0.1:{c.JupyterHub.port}"
c.LocalPlatformSpawner.container_engine = os.environ.get("MLP_HUB_ENGINE") == "1"
c.LocalPlatformSpawner.home_dir_template = str(data_dir / "home" / "{username}")
c.Spawner.notebook_dir = str(data_dir / "home" / "{username}")
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 180
c.Spawner.http_timeout = 180

# The platform API as a hub service (the same roles and scopes as on Kubernetes).
configure_platform_service(c, platform_url, os.environ["MLP_SERVICE_API_TOKEN"])
