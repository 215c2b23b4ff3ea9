from __future__ import annotations

import pytest
import yaml

from mlplatform_server.config import load_config, parse_config
from mlplatform_server.errors import ConfigError


def test_shipped_default_has_three_environments_and_three_sizes():
    config = load_config()
    assert [e.name for e in config.environments] == ["python", "deep-learning", "gpu"]
    assert config.environment("gpu").image == "localhost/mlplatform/gpu:latest"
    assert [h.name for h in config.hardware] == ["cpu-small", "cpu-large", "gpu-1"]
    gpu = config.hardware_size("gpu-1").to_hardware()
    assert gpu.gpus == 1 and gpu.tolerations[0]["key"] == "nvidia.com/gpu"
    assert config.hardware_size(None).name == "cpu-small"
    assert config.environment(None).name == "python"


def good() -> dict:
    return {
        "environments": [{"name": "python", "image": "img:1"}],
        "hardware": [{"name": "small", "cpu": 1, "memory": "1Gi"}],
    }


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda c: c["hardware"][0].update(memory="2 GB"), "hardware[0].memory"),
        (lambda c: c["hardware"][0].update(cpus=2), "hardware[0].cpus: unknown key"),
        (lambda c: c["environments"][0].pop("image"), "environments[0].image"),
        (lambda c: c["environments"][0].update(name="Bad_Name"), "environments[0].name"),
        (lambda c: c["hardware"].append(dict(c["hardware"][0])), "duplicate name(s) small"),
        (lambda c: c["hardware"][0].update(gpus=-1), "hardware[0].gpus"),
        (lambda c: c.update(hardware=[]), "hardware"),
        (lambda c: c.update(extra=1), "extra: unknown key"),
    ],
)
def test_bad_config_names_the_key(mutate, fragment):
    data = good()
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, "platform.yaml")
    assert fragment in err.value.message
    assert err.value.message.startswith("platform.yaml: ")


def test_unknown_names_list_the_choices(tmp_path):
    path = tmp_path / "platform.yaml"
    path.write_text(yaml.safe_dump(good()))
    config = load_config(path)
    with pytest.raises(ConfigError, match="Unknown hardware size 'huge': choose one of small"):
        config.hardware_size("huge")
    with pytest.raises(ConfigError, match="Unknown environment 'r': choose one of python"):
        config.environment("r")


def test_unreadable_and_invalid_yaml(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read platform config"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("environments: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
