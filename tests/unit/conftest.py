"""Fixtures shared by the unit tests."""

from __future__ import annotations

import pytest

from mlplatform_server.backends.process import ProcessBackend
from mlplatform_server.config import load_config
from mlplatform_server.services.platform import Platform, PlatformSettings
from mlplatform_server.store.db import Store, sqlite_url
from support import stop_stray_processes


@pytest.fixture
def platform(tmp_path):
    """The platform's services on a real SQLite store with the process backend (no HTTP server)."""
    data = tmp_path / "data"
    data.mkdir()
    store = Store(sqlite_url(data))
    settings = PlatformSettings(data_dir=data, db_url=store.url, api_url="http://127.0.0.1:9", admin_token="t")
    platform = Platform(settings, store, ProcessBackend(), load_config())
    yield platform
    stop_stray_processes(tmp_path)  # runs whose process still runs
    store.close()
