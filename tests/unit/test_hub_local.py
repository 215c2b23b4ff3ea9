"""The local hub's form and choice checks (mlplatform_server/hub/local.py), without a hub."""

from __future__ import annotations

import re

import pytest

from mlplatform_server.config import load_config, parse_config
from mlplatform_server.errors import ConfigError
from mlplatform_server.hub.local import NO_GPU_REASON, options_form_html, unavailable_reason


def _options(page: str, name: str) -> dict[str, str]:
    select = re.search(rf'<select[^>]*name="{name}">(.*?)</select>', page).group(1)
    return {m.group(1): m.group(0) for m in re.finditer(r'<option value="([^"]+)"[^>]*>[^<]*</option>', select)}


def test_form_without_gpu_disables_gpu_sizes_with_the_reason():
    page = options_form_html(load_config(), groups={"gpu-users"}, gpus=0, engine=True)
    assert '<input type="hidden" name="profile" value="mlplatform">' in page
    envs = _options(page, "environment")
    assert list(envs) == ["python", "deep-learning", "gpu"] and "selected" in envs["python"]
    assert "(image localhost/mlplatform/python:latest)" in envs["python"]
    assert "jobs run in the environment&#x27;s container image" in page
    sizes = _options(page, "hardware")
    assert list(sizes) == ["cpu-small", "cpu-large", "gpu-1"]
    assert "selected" in sizes["cpu-small"] and "disabled" not in sizes["cpu-large"]
    assert "disabled" in sizes["gpu-1"] and f"(unavailable: {NO_GPU_REASON})" in sizes["gpu-1"]


def test_form_with_a_gpu_keeps_group_only_sizes_for_their_groups():
    config = load_config()
    gpu = config.hardware_size("gpu-1")
    assert unavailable_reason(gpu, {"gpu-users"}, gpus=1) is None
    assert unavailable_reason(gpu, set(), gpus=1) == "only for members of the group(s) gpu-users"
    assert unavailable_reason(gpu, {"gpu-users"}, gpus=0) == NO_GPU_REASON
    page = options_form_html(config, groups={"gpu-users"}, gpus=1, engine=False)
    assert "disabled" not in _options(page, "hardware")["gpu-1"]
    assert "No container engine answers: this notebook and its jobs run in the current Python" in page
    assert "image" not in _options(page, "environment")["python"]


def test_form_escapes_admin_text_and_picks_an_open_default():
    config = parse_config({
        "environments": [{"name": "e", "image": "img", "display_name": "<b>E</b>"}],
        "hardware": [{"name": "big", "cpu": 1, "memory": "1Gi", "gpus": 2, "default": True},
                     {"name": "small", "cpu": 1, "memory": "1Gi"}],
    })
    page = options_form_html(config, groups=set(), gpus=1, engine=False)
    assert "<b>E</b>" not in page and "&lt;b&gt;E&lt;/b&gt;" in page
    sizes = _options(page, "hardware")
    assert "needs 2 GPUs, this machine has 1" in sizes["big"] and "selected" in sizes["small"]


def test_spawner_refuses_unknown_and_unusable_choices():
    from jupyterhub import orm
    from jupyterhub.objects import Hub
    from jupyterhub.user import User
    from traitlets.config import Config

    from mlplatform_server.hub.local import LocalPlatformSpawner

    cfg = Config()
    cfg.LocalPlatformSpawner.platform_config = load_config()
    cfg.LocalPlatformSpawner.gpus = 0
    db = orm.new_session_factory("sqlite:///:memory:")()
    orm_user = orm.User(name="ann")
    db.add(orm_user)
    db.commit()
    user = User(orm_user, settings={"hub": Hub(ip="127.0.0.1", port=8081, base_url="/hub/"), "config": cfg,
                                    "spawner_class": LocalPlatformSpawner, "db": db, "domain": "", "base_url": "/"})
    spawner = user.spawners[""]
    assert spawner.options_from_form({"profile": ["mlplatform"], "environment": ["python"],
                                      "hardware": ["cpu-large"]}) == {
        "profile": "mlplatform", "environment": "python", "hardware": "cpu-large"}
    with pytest.raises(ConfigError, match="Unknown environment 'nope'"):
        spawner.options_from_form({"environment": ["nope"]})
    with pytest.raises(ConfigError, match="Hardware size 'gpu-1' cannot be used here: no NVIDIA GPU"):
        spawner.options_from_form({"hardware": ["gpu-1"]})
    with pytest.raises(ConfigError, match="Unknown profile"):
        spawner.options_from_form({"profile": ["other"]})
