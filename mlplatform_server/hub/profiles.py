"""KubeSpawner's ``profile_list`` from the platform config: one profile whose two options are the
environment (image) and the hardware size (resources, GPUs, placement), each choice a
``kubespawner_override``.

Sizes with ``groups`` are offered only to members of one of those JupyterHub groups: the list is a
callable of the spawner, so each user's form holds only what they may pick, and
:func:`check_user_options` refuses a hidden choice sent through the REST API.

KubeSpawner keeps one spawner object per server and *merges* dict overrides into it, so a size's
``node_selector`` / ``extra_resource_limits`` also clear (``None``) the keys other sizes set: a CPU
spawn after a GPU spawn does not keep asking for a GPU node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..backends.base import parse_quantity
from ..config import Environment, HardwareSize, PlatformConfig, load_config
from ..errors import ConfigError

PROFILE_SLUG = "mlplatform"
GPU_RESOURCE = "nvidia.com/gpu"


def environment_override(env: Environment) -> dict[str, Any]:
    return {"image": env.image}


def hardware_override(size: HardwareSize, config: PlatformConfig) -> dict[str, Any]:
    """The spawner settings of one size (see the module doc for the ``None`` entries)."""
    selector: dict[str, str | None] = {k: None for s in config.hardware for k in s.node_selector}
    selector.update(size.node_selector)
    memory = parse_quantity(size.memory)
    guarantee = parse_quantity(size.memory_guarantee) if size.memory_guarantee else memory
    return {
        "cpu_limit": float(size.cpu),
        "cpu_guarantee": float(size.cpu_guarantee if size.cpu_guarantee is not None else size.cpu),
        "mem_limit": memory,
        "mem_guarantee": guarantee,
        "extra_resource_limits": {GPU_RESOURCE: str(size.gpus) if size.gpus else None},
        "node_selector": selector,
        "tolerations": [t.model_dump(exclude_none=True) for t in size.tolerations],
    }


def size_allowed(size: HardwareSize, groups: Iterable[str] | None) -> bool:
    """``groups=None``: no filtering (every size)."""
    return groups is None or not size.groups or bool(set(size.groups) & set(groups))


def default_size_name(config: PlatformConfig, open_sizes: list[HardwareSize]) -> str:
    """The config's default size when the user may pick it, else the first size they may."""
    name = config.hardware_size(None).name
    return name if not open_sizes or name in {s.name for s in open_sizes} else open_sizes[0].name


def build_profile_list(config: PlatformConfig, groups: Iterable[str] | None = None,
                       priority_class: str | None = None, user: str = "") -> list[dict[str, Any]]:
    """The ``profile_list`` for a member of ``groups`` (None: unfiltered)."""
    groups = None if groups is None else set(groups)
    sizes = [s for s in config.hardware if size_allowed(s, groups)]
    if not sizes:
        raise ConfigError(f"No hardware size is open to user {user!r} (groups: {sorted(groups or [])}): "
                          "every size in hardware lists groups the user is not in")
    default_env = config.environment(None).name
    default_size = default_size_name(config, sizes)
    profile_override: dict[str, Any] = {}
    if priority_class:
        profile_override["priority_class_name"] = priority_class
    return [{
        "display_name": "ML platform notebook",
        "slug": PROFILE_SLUG,
        "description": "Pick a software environment and a hardware size.",
        "default": True,
        "kubespawner_override": profile_override,
        "profile_options": {
            "environment": {
                "display_name": "Environment",
                "choices": {
                    e.name: {
                        "display_name": e.display_name or e.name,
                        "default": e.name == default_env,
                        "kubespawner_override": environment_override(e),
                    }
                    for e in config.environments
                },
            },
            "hardware": {
                "display_name": "Hardware",
                "choices": {
                    s.name: {
                        "display_name": s.display_name or s.name,
                        "default": s.name == default_size,
                        "kubespawner_override": hardware_override(s, config),
                    }
                    for s in sizes
                },
            },
        },
    }]


def spawner_groups(spawner: Any) -> set[str]:
    """The JupyterHub group names of the spawner's user."""
    return {getattr(g, "name", g) for g in (getattr(spawner.user, "groups", None) or [])}


def profile_list_for(config: PlatformConfig, priority_class: str | None = None
                     ) -> Callable[[Any], list[dict[str, Any]]]:
    """A ``KubeSpawner.profile_list`` callable: each user's form holds only their sizes.

    The list depends on the user only through the sizes their groups open, so it is built once per
    such set (KubeSpawner deep-copies the list it is given before filling in defaults)."""
    built: dict[frozenset[str], list[dict[str, Any]]] = {}

    def profile_list(spawner: Any) -> list[dict[str, Any]]:
        groups = spawner_groups(spawner)
        opened = frozenset(s.name for s in config.hardware if size_allowed(s, groups))
        if opened not in built:  # none opened: build_profile_list says so, every time
            built[opened] = build_profile_list(config, groups, priority_class, spawner.user.name)
        return built[opened]
    return profile_list


def check_user_options(config: PlatformConfig, options: dict[str, Any], groups: Iterable[str],
                       user: str = "") -> None:
    """Refuse, with a message naming what was wrong, a spawn request for an unknown profile,
    environment or size, or a size the user's groups may not pick."""
    profile = options.get("profile")
    if profile not in (None, "", PROFILE_SLUG):
        raise ConfigError(f"Unknown profile {profile!r}: the only profile is {PROFILE_SLUG!r}")
    env = options.get("environment")
    if env:
        config.environment(env)
    hardware = options.get("hardware")
    if hardware:
        size = config.hardware_size(hardware)
        if not size_allowed(size, groups):
            raise ConfigError(
                f"Hardware size {size.name!r} is only for members of the group(s) "
                f"{', '.join(size.groups)}; user {user!r} is not in any of them")


def load_hub_config(path: str | Path | None = None) -> PlatformConfig:
    """The platform config for the hub; a bad one raises :class:`ConfigError` naming the bad key,
    so ``jupyterhub_config.py`` stops the hub before any user sees a broken form."""
    config = load_config(path)
    source = str(path) if path else "default platform.yaml"
    problems = [f"environments[{i}].image: empty (expected a container image reference)"
                for i, e in enumerate(config.environments) if not e.image.strip()]
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(problems), problems=problems)
    build_profile_list(config)  # every override is well formed
    return config
