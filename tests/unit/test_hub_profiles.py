"""The hub's KubeSpawner profile_list, built from the platform config (hub/profiles.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml

from mlplatform_server.config import load_config, parse_config
from mlplatform_server.errors import ConfigError
from mlplatform_server.hub.profiles import (
    build_profile_list,
    check_user_options,
    load_hub_config,
    profile_list_for,
)

ROOT = Path(__file__).resolve().parents[2]
GiB = 1024**3


def test_profile_list_from_the_shipped_config():
    [profile] = build_profile_list(load_config(), groups={"gpu-users"}, priority_class="mlplatform-users")
    assert profile["slug"] == "mlplatform" and profile["default"] is True
    assert profile["kubespawner_override"] == {"priority_class_name": "mlplatform-users"}
    envs = profile["profile_options"]["environment"]["choices"]
    assert list(envs) == ["python", "deep-learning", "gpu"]
    assert envs["python"] == {"display_name": "Python (scikit-learn, xgboost, pandas)", "default": True,
                              "kubespawner_override": {"image": "localhost/mlplatform/python:latest"}}
    assert envs["gpu"] == {"display_name": "GPU (PyTorch with CUDA 12)", "default": False,
                           "kubespawner_override": {"image": "localhost/mlplatform/gpu:latest"}}
    sizes = profile["profile_options"]["hardware"]["choices"]
    assert list(sizes) == ["cpu-small", "cpu-large", "gpu-1"]
    assert sizes["cpu-small"] == {
        "display_name": "Small CPU (1 CPU, 2 GiB)", "default": True,
        "kubespawner_override": {
            "cpu_limit": 1.0, "cpu_guarantee": 1.0, "mem_limit": 2 * GiB, "mem_guarantee": 2 * GiB,
            "extra_resource_limits": {"nvidia.com/gpu": None},
            "node_selector": {"cloud.google.com/gke-accelerator": None},
            "tolerations": [],
        },
    }
    assert sizes["gpu-1"] == {
        "display_name": "One GPU (8 CPU, 32 GiB, 1 NVIDIA GPU)", "default": False,
        "kubespawner_override": {
            "cpu_limit": 8.0, "cpu_guarantee": 8.0, "mem_limit": 32 * GiB, "mem_guarantee": 32 * GiB,
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
            "node_selector": {"cloud.google.com/gke-accelerator": "nvidia-tesla-t4"},
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        },
    }


def test_guarantees_below_limits():
    cfg = parse_config({
        "environments": [{"name": "py", "image": "img:1"}],
        "hardware": [{"name": "burst", "cpu": 4, "memory": "8Gi", "cpu_guarantee": 0.5, "memory_guarantee": "1Gi"}],
    })
    [profile] = build_profile_list(cfg)
    over = profile["profile_options"]["hardware"]["choices"]["burst"]["kubespawner_override"]
    assert (over["cpu_limit"], over["cpu_guarantee"], over["mem_limit"], over["mem_guarantee"]) == (4.0, 0.5, 8 * GiB, GiB)
    assert "priority_class_name" not in profile["kubespawner_override"]


def test_gpu_sizes_only_for_their_groups():
    config = load_config()
    spawner = SimpleNamespace(user=SimpleNamespace(name="bob", groups=[SimpleNamespace(name="staff")]))
    [profile] = profile_list_for(config)(spawner)
    assert list(profile["profile_options"]["hardware"]["choices"]) == ["cpu-small", "cpu-large"]
    spawner.user.groups.append(SimpleNamespace(name="gpu-users"))
    [profile] = profile_list_for(config)(spawner)
    assert list(profile["profile_options"]["hardware"]["choices"]) == ["cpu-small", "cpu-large", "gpu-1"]


def test_one_profile_list_callable_serves_each_users_own_sizes():
    """The callable keeps one list per set of opened sizes: a GPU user served first does not leak
    gpu-1 into the next user's form, and users opening the same sizes share one list."""
    config = load_config()
    profile_list = profile_list_for(config)

    def user(name: str, *groups: str) -> SimpleNamespace:
        return SimpleNamespace(user=SimpleNamespace(name=name, groups=[SimpleNamespace(name=g) for g in groups]))

    def sizes(spawner: SimpleNamespace) -> list[str]:
        return list(profile_list(spawner)[0]["profile_options"]["hardware"]["choices"])

    assert sizes(user("ann", "gpu-users")) == ["cpu-small", "cpu-large", "gpu-1"]
    assert sizes(user("bob", "staff")) == ["cpu-small", "cpu-large"]
    assert sizes(user("cid")) == ["cpu-small", "cpu-large"]
    assert profile_list(user("bob", "staff")) is profile_list(user("dan", "other"))
    assert sizes(user("eve", "staff", "gpu-users")) == ["cpu-small", "cpu-large", "gpu-1"]


def test_hidden_or_unknown_choices_are_refused_by_name():
    config = load_config()
    with pytest.raises(ConfigError, match=r"'gpu-1' is only for members of the group\(s\) gpu-users; user 'bob'"):
        check_user_options(config, {"profile": "mlplatform", "hardware": "gpu-1"}, {"staff"}, "bob")
    check_user_options(config, {"profile": "mlplatform", "hardware": "gpu-1"}, {"gpu-users"}, "ann")
    with pytest.raises(ConfigError, match="Unknown hardware size 'gpu-9'"):
        check_user_options(config, {"hardware": "gpu-9"}, set(), "bob")
    with pytest.raises(ConfigError, match="Unknown environment 'r'"):
        check_user_options(config, {"environment": "r"}, set(), "bob")
    with pytest.raises(ConfigError, match="Unknown profile 'other'"):
        check_user_options(config, {"profile": "other"}, set(), "bob")


def test_default_size_hidden_falls_back_to_first_allowed():
    cfg = parse_config({
        "environments": [{"name": "py", "image": "img:1"}],
        "hardware": [{"name": "big", "cpu": 8, "memory": "8Gi", "default": True, "groups": ["power"]},
                     {"name": "small", "cpu": 1, "memory": "1Gi"}],
    })
    [profile] = build_profile_list(cfg, groups=set())
    assert profile["profile_options"]["hardware"]["choices"] == {
        "small": {**profile["profile_options"]["hardware"]["choices"]["small"], "default": True}}
    only_groups = parse_config({"environments": [{"name": "py", "image": "i"}],
                                "hardware": [{"name": "big", "cpu": 8, "memory": "8Gi", "groups": ["power"]}]})
    with pytest.raises(ConfigError, match="No hardware size is open to user 'eve'"):
        build_profile_list(only_groups, groups=set(), user="eve")


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((ROOT / "mlplatform_server" / "default_platform.yaml").read_text())
    mutate(data)
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, fragment", [
    (lambda d: d["hardware"][2].update(groups=["gpu users"]), "hardware[2].groups: 'gpu users' is not a valid JupyterHub group name"),
    (lambda d: d["hardware"][2].update(group=["gpu-users"]), "hardware[2].group: unknown key"),
    (lambda d: d["hardware"][0].update(cpu_guarantee=2), "hardware[0]: cpu_guarantee 2.0 is above cpu 1.0"),
    (lambda d: d["hardware"][1].update(memory_guarantee="1 TB"), "hardware[1].memory_guarantee: not a memory quantity"),
    (lambda d: d["environments"][0].update(image=" "), "environments[0].image: empty"),
])
def test_bad_hub_config_names_the_key(tmp_path, mutate, fragment):
    with pytest.raises(ConfigError) as err:
        load_hub_config(_write(tmp_path, mutate))
    assert fragment in err.value.message


def test_jupyterhub_refuses_to_start_on_a_bad_config(tmp_path):
    """The real `jupyterhub` loading jupyter-config/jupyterhub_config.py: exits before serving."""
    bad = _write(tmp_path, lambda d: d["hardware"][1].update(memroy="4Gi"))
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("jupyterhub")), "-f", str(ROOT / "jupyter-config" / "jupyterhub_config.py")],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "MLP_PLATFORM_CONFIG": str(bad), "HOME": str(tmp_path)},
    )
    assert proc.returncode != 0
    assert "bad platform config" in proc.stderr and "hardware[1].memroy: unknown key" in proc.stderr
    assert not (tmp_path / "jupyterhub.sqlite").exists()
