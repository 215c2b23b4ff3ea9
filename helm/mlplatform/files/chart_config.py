"""The hub's entry config in the Helm chart (`jupyterhub --config chart_config.py`).

It loads the repository's jupyterhub_config.py (profiles from the platform config, notebook pods'
home on the shared claim, the platform API as a hub service...) and then sets only what the chart
decides: the hub's database, where the hub listens and where the separate proxy is.
Every value comes from the environment the chart's Deployment sets; secrets come from secretKeyRef
(never from this file).
"""

import os
from pathlib import Path

c = get_config()  # noqa: F821 (given by traitlets)


def _env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"chart_config.py: the environment variable {name} is not set (set by the Helm chart)")
    return value


_main = Path(_env("MLP_HUB_CONFIG"))
if not _main.is_file():
    raise SystemExit(f"chart_config.py: {_main} does not exist (the hub ConfigMap's jupyterhub_config.py)")
load_subconfig(str(_main))  # noqa: F821 (given by traitlets)

c.JupyterHub.db_url = _env("JUPYTERHUB_DB_URL")
c.JupyterHub.hub_bind_url = f"http://:{_env('MLP_HUB_PORT')}"
c.JupyterHub.hub_connect_url = _env("MLP_HUB_URL")
# The proxy runs in its own Deployment; CONFIGPROXY_AUTH_TOKEN (from the chart's Secret) is its token.
c.JupyterHub.cleanup_servers = False
c.ConfigurableHTTPProxy.should_start = False
c.ConfigurableHTTPProxy.api_url = _env("MLP_PROXY_API_URL")

# Notebook pods: jupyterhub_config.py reads MLP_NAMESPACE, MLP_HOME_CLAIM, MLP_PRIORITY_CLASS,
# MLP_PLATFORM_URL and MLP_SERVICE_API_TOKEN, which the chart sets; the chart's namespace, priority
# and "no API token" hold whatever that file says.
c.KubeSpawner.namespace = _env("MLP_NAMESPACE")
c.KubeSpawner.priority_class_name = _env("MLP_PRIORITY_CLASS")
c.KubeSpawner.automount_service_account_token = False
