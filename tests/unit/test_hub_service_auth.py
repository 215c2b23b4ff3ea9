"""hub/service_auth.py outside a hub: off without the hub's environment; a hub that does not
answer is a clear error (not a silent 401). The accepted/refused paths run against a real
JupyterHub in tests/api/test_hub_service.py."""

from __future__ import annotations

import pytest

from mlplatform_server.errors import BackendError
from mlplatform_server.hub.service_auth import HubTokenAuthenticator
from support import free_port


def test_enabled_only_as_a_hub_service():
    assert HubTokenAuthenticator.from_env({}) is None
    assert HubTokenAuthenticator.from_env({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api"}) is None
    auth = HubTokenAuthenticator.from_env({"JUPYTERHUB_API_URL": "http://hub:8081/hub/api/",
                                           "JUPYTERHUB_API_TOKEN": "t", "JUPYTERHUB_SERVICE_NAME": "plat"})
    assert auth is not None and auth.api_url == "http://hub:8081/hub/api"
    assert auth.required_scopes == {"access:services!service=plat", "access:services"}
    assert HubTokenAuthenticator.from_env({"JUPYTERHUB_API_URL": "u", "JUPYTERHUB_API_TOKEN": "t"}).service_name == "mlplatform"


async def test_unreachable_hub_is_a_backend_error_naming_it():
    url = f"http://127.0.0.1:{free_port()}/hub/api"
    auth = HubTokenAuthenticator(url, "service-token", timeout=5)
    with pytest.raises(BackendError, match=f"JupyterHub API at {url} did not answer"):
        await auth("some-user-token")


async def test_auth_service_hub_hook_order_and_user_records(tmp_path):
    """AuthService with a hub hook (the real one is exercised in tests/api/test_hub_service.py):
    platform tokens first, then the hub, then workloads; hub users recorded with their admin flag."""
    from mlplatform_server.errors import Forbidden, Unauthorized
    from mlplatform_server.services.auth import AuthService
    from mlplatform_server.store import models as m
    from mlplatform_server.store.db import Store, sqlite_url

    store = Store(sqlite_url(tmp_path))
    hub_users = {"hub-ann": ("ann", False), "hub-root": ("root", True), "hub-admin": ("admin", False)}
    asked: list[str] = []

    async def hub(token: str):
        asked.append(token)
        return hub_users.get(token)

    async def workload(token: str):
        return None

    auth = AuthService(store, "admin-secret", hub=hub, workload=workload)
    assert (await auth.authenticate_request("admin-secret")).admin is True and asked == []
    ann = await auth.authenticate_request("hub-ann")
    assert (ann.name, ann.admin) == ("ann", False)
    root = await auth.authenticate_request("hub-root")
    assert (root.name, root.admin) == ("root", True)
    with store.session() as s:
        assert s.get(m.User, "ann").admin is False and s.get(m.User, "root").admin is True
    hub_users["hub-ann"] = ("ann", True)  # made a hub admin: the platform follows
    assert (await auth.authenticate_request("hub-ann")).admin is True
    with store.session() as s:
        assert s.get(m.User, "ann").admin is True
    with pytest.raises(Forbidden, match="built-in admin"):
        await auth.authenticate_request("hub-admin")
    with store.session() as s:
        assert s.get(m.User, "admin").admin is True
    with pytest.raises(Unauthorized, match="Invalid API token"):
        await auth.authenticate_request("unknown")
    with pytest.raises(Unauthorized, match="Missing API token"):
        await auth.authenticate_request(None)
