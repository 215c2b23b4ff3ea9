"""The hub side: KubeSpawner profiles from the platform config, the notebook spawner, and the
platform API's JupyterHub service authentication (see README "JupyterHub")."""
