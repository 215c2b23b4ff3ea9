"""JupyterHub config for the platform on Kubernetes (see README "JupyterHub").

The notebook form is built from the platform config (environments × hardware sizes); a bad one
stops the hub here, naming the bad key. Settings come from the environment:

  MLP_PLATFORM_CONFIG    platform.yaml (default: the shipped one)
  MLP_PLATFORM_URL       the platform API as the hub and notebook pods reach it (MLP_URL)
  MLP_SERVICE_API_TOKEN  the platform API's token as a hub service (also its JUPYTERHUB_API_TOKEN)
  MLP_NAMESPACE          namespace of the notebook pods (default: KubeSpawner's, the hub's own)
  MLP_HOME_CLAIM         RWX PersistentVolumeClaim holding homes (default mlp-data), per-user
                         subPath MLP_HOME_SUBPATH (default home/{username})
  MLP_PRIORITY_CLASS     PriorityClass of notebook pods (default: none)
  MLP_HUB_EXTRA_CONFIG   another config file loaded last (authenticator, ports, ...)
"""

import os

from mlplatform_server.hub.hub_config import (configure_notebook_pods, configure_platform_service,
                                              platform_config_or_exit)
from mlplatform_server.hub.profiles import profile_list_for

c = get_config()  # noqa: F821 (defined by traitlets when it loads this file)

platform = platform_config_or_exit()

platform_url = os.environ.get("MLP_PLATFORM_URL", "http://mlplatform:8000").rstrip("/")

# Notebook pods: the platform's profiles and spawner.
c.JupyterHub.spawner_class = "mlplatform_server.hub.spawner.MLPlatformSpawner"
c.MLPlatformSpawner.platform_config = platform
c.MLPlatformSpawner.platform_url = platform_url
c.KubeSpawner.profile_list = profile_list_for(platform, os.environ.get("MLP_PRIORITY_CLASS") or None)
if os.environ.get("MLP_NAMESPACE"):
    c.KubeSpawner.namespace = os.environ["MLP_NAMESPACE"]
c.KubeSpawner.default_url = "/lab"
# Home on the shared claim, the images' user mlp (uid 1000), no Kubernetes API token.
configure_notebook_pods(c, os.environ.get("MLP_HOME_CLAIM", "mlp-data"),
                        os.environ.get("MLP_HOME_SUBPATH", "home/{username}"))
c.KubeSpawner.extra_labels = {"app.kubernetes.io/part-of": "mlplatform"}

# The platform API as a hub service; the servers' tokens ($JUPYTERHUB_API_TOKEN, also MLP_TOKEN) may call it.
configure_platform_service(c, platform_url, os.environ.get("MLP_SERVICE_API_TOKEN"))

extra = os.environ.get("MLP_HUB_EXTRA_CONFIG")
if extra:
    load_subconfig(extra)  # noqa: F821
