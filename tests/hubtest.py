"""Real KubeSpawner objects without a running hub: a JupyterHub ORM user (with groups) in an
in-memory database, wrapped in jupyterhub's own ``User``, whose spawner is our spawner class."""

from __future__ import annotations

import os
import secrets
from typing import Any

from jupyterhub import orm
from jupyterhub.objects import Hub
from jupyterhub.user import User
from kubernetes_asyncio.config import kube_config
from kubespawner import KubeSpawner
from traitlets.config import Config

from mlplatform_server.config import PlatformConfig
from mlplatform_server.hub.hub_config import configure_notebook_pods
from mlplatform_server.hub.profiles import build_profile_list, profile_list_for
from mlplatform_server.hub.spawner import MLPlatformSpawner


def hub_config(platform: PlatformConfig, namespace: str, claim: str, plain: bool = False) -> Config:
    """What jupyter-config/jupyterhub_config.py sets for KubeSpawner (the parts a pod shows).
    ``plain``: a stock KubeSpawner with a fixed, unfiltered list of the same profiles."""
    cfg = Config()
    if plain:
        cfg.KubeSpawner.profile_list = build_profile_list(platform)
    else:
        cfg.MLPlatformSpawner.platform_config = platform
        cfg.MLPlatformSpawner.platform_url = "http://mlplatform.test:8000"
        cfg.KubeSpawner.profile_list = profile_list_for(platform)
    cfg.KubeSpawner.namespace = namespace
    configure_notebook_pods(cfg, claim)
    cfg.KubeSpawner.start_timeout = 120
    cfg.KubeSpawner.events_enabled = False
    return cfg


class Hubless:
    """A JupyterHub ORM database of users and groups; :meth:`spawner` gives a user's spawner."""

    def __init__(self, kubeconfig: str) -> None:
        # kubespawner loads the default kubeconfig, whose path kubernetes_asyncio read at import
        os.environ["KUBECONFIG"] = kubeconfig
        kube_config.KUBE_CONFIG_DEFAULT_LOCATION = kubeconfig
        self.db = orm.new_session_factory("sqlite:///:memory:")()
        self.hub = Hub(ip="127.0.0.1", port=8081, base_url="/hub/")
        self._groups: dict[str, orm.Group] = {}

    def user(self, name: str, groups: tuple[str, ...] = ()) -> orm.User:
        orm_user = orm.User(name=name)
        for group in groups:
            if group not in self._groups:
                self._groups[group] = orm.Group(name=group)
                self.db.add(self._groups[group])
            orm_user.groups.append(self._groups[group])
        self.db.add(orm_user)
        self.db.commit()
        return orm_user

    def spawner(self, orm_user: orm.User, cfg: Config, spawner_class: type = MLPlatformSpawner,
                options: dict[str, Any] | None = None) -> KubeSpawner:
        user = User(orm_user, settings={"hub": self.hub, "config": cfg, "spawner_class": spawner_class,
                                        "db": self.db, "domain": "", "base_url": "/"})
        spawner = user.spawners[""]
        spawner.user_options = dict(options or {})
        spawner.api_token = secrets.token_hex(16)  # the hub would issue one at spawn
        return spawner


async def stop_reflectors() -> None:
    """KubeSpawner's pod watchers are class-wide and bound to one event loop: end them per test."""
    for reflector in list(KubeSpawner.reflectors.values()):
        await reflector.stop()
    KubeSpawner.reflectors.clear()
