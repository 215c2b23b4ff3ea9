"""The hub on one machine (``make run``): a local-process spawner with the platform's form.

The form is the same environment × hardware choice as on Kubernetes (:mod:`.profiles`), as plain
HTML: every size is listed, and one the user cannot have is shown disabled with the reason (no GPU
on this machine: ``nvidia-smi`` absent or failing; a size kept for JupyterHub groups the user is
not in). The notebook server runs in the hub's own Python environment; the chosen environment's
image (when a Docker-compatible engine runs the jobs) is recorded in the server's environment
(``MLP_ENVIRONMENT``, ``MLP_IMAGE``) for the runs started from it. ``mlp`` is preconfigured with the
platform URL and the server's hub-issued token.

Not for shared machines: every user's server runs as the hub's own system user
(``SimpleLocalProcessSpawner``), homes under ``<data dir>/home/<user>``.
"""

from __future__ import annotations

import html
import os
import sys
from pathlib import Path
from typing import Any

from jupyterhub.spawner import SimpleLocalProcessSpawner
from traitlets import Any as AnyTrait
from traitlets import Bool, Unicode, default

from ..backends.base import parse_quantity
from ..config import Environment, HardwareSize, PlatformConfig
from ..errors import ConfigError
from ..gpus import NO_GPU_REASON, machine_gpus
from .profiles import PROFILE_SLUG, check_user_options, default_size_name, size_allowed, spawner_groups


def gpu_count() -> int:
    """GPUs that ``nvidia-smi -L`` lists (0 without the tool)."""
    return len(machine_gpus())


def unavailable_reason(size: HardwareSize, groups: set[str], gpus: int) -> str | None:
    """Why this user cannot pick ``size`` here, or None."""
    if size.gpus and size.gpus > gpus:
        return NO_GPU_REASON if gpus == 0 else f"needs {size.gpus} GPUs, this machine has {gpus}"
    if not size_allowed(size, groups):
        return f"only for members of the group(s) {', '.join(size.groups)}"
    return None


ENGINE_NOTE = ("This notebook runs in the hub's Python environment; jobs run in the environment's "
               "container image.")
NO_ENGINE_NOTE = ("No container engine answers: this notebook and its jobs run in the current Python "
                  "environment.")


def environment_label(env: Environment, engine: bool) -> str:
    name = env.display_name or env.name
    return f"{name} (image {env.image})" if engine else name


def options_form_html(config: PlatformConfig, groups: set[str], gpus: int, engine: bool) -> str:
    """The spawn form: an environment select and a hardware select (unavailable sizes disabled)."""
    default_env = config.environment(None).name
    open_sizes = [s for s in config.hardware if unavailable_reason(s, groups, gpus) is None]
    default_size = default_size_name(config, open_sizes)
    esc = html.escape
    envs = "".join(
        f'<option value="{esc(e.name)}"{" selected" if e.name == default_env else ""}>'
        f'{esc(environment_label(e, engine))}</option>'
        for e in config.environments)
    sizes = []
    for s in config.hardware:
        reason = unavailable_reason(s, groups, gpus)
        attrs = (" disabled" if reason else "") + (" selected" if s.name == default_size else "")
        label = esc(s.display_name or s.name) + (f" (unavailable: {esc(reason)})" if reason else "")
        title = f' title="{esc(reason)}"' if reason else ""
        sizes.append(f'<option value="{esc(s.name)}"{attrs}{title}>{label}</option>')
    return (
        f'<input type="hidden" name="profile" value="{PROFILE_SLUG}">'
        '<div class="form-group"><label for="mlp-environment">Environment</label>'
        f'<select class="form-control" id="mlp-environment" name="environment">{envs}</select>'
        f'<small class="form-text text-muted">{esc(ENGINE_NOTE if engine else NO_ENGINE_NOTE)}</small></div>'
        '<div class="form-group"><label for="mlp-hardware">Hardware</label>'
        f'<select class="form-control" id="mlp-hardware" name="hardware">{"".join(sizes)}</select></div>'
    )


class LocalPlatformSpawner(SimpleLocalProcessSpawner):
    platform_config = AnyTrait(None, allow_none=True, config=True,
                               help="The PlatformConfig (environments, hardware sizes) of the form.")
    platform_url = Unicode("", config=True, help="The platform API (MLP_URL of the user's server).")
    platform_data_dir = Unicode("", config=True,
                                help="The platform's data directory (MLP_DATA_DIR: runs' artifacts for TensorBoard).")
    container_engine = Bool(False, config=True,
                            help="Whether the platform runs jobs in a Docker-compatible engine (the form says so).")
    hub_public_url = Unicode("", config=True,
                         help="The hub's public origin (MLP_PUBLIC_URL: the URLs `mlp tensorboard` prints).")
    gpus = AnyTrait(None, allow_none=True, config=True,
                    help="GPUs on this machine (default: what nvidia-smi -L lists).")

    @default("cmd")
    def _default_cmd(self) -> list[str]:
        return [str(Path(sys.executable).with_name("jupyterhub-singleuser"))]

    @default("options_form")
    def _default_options_form(self) -> Any:
        return lambda spawner: spawner.render_form()

    def gpu_count(self) -> int:
        return gpu_count() if self.gpus is None else int(self.gpus)

    def render_form(self) -> str:
        return options_form_html(self.platform_config, spawner_groups(self), self.gpu_count(),
                                 self.container_engine)

    def options_from_form(self, formdata: dict[str, list[str]]) -> dict[str, Any]:
        options = {k: (formdata.get(k) or [""])[0] for k in ("profile", "environment", "hardware")}
        options = {k: v for k, v in options.items() if v}
        self.check_options(options)
        return options

    def check_options(self, options: dict[str, Any]) -> tuple[Environment, HardwareSize]:
        """The chosen environment and size; ConfigError (shown on the spawn page) for a bad one."""
        config: PlatformConfig = self.platform_config
        groups = spawner_groups(self)
        env = config.environment(options.get("environment") or None)
        size = config.hardware_size(options.get("hardware") or None)
        reason = unavailable_reason(size, groups, self.gpu_count())
        if reason:
            raise ConfigError(f"Hardware size {size.name!r} cannot be used here: {reason}")
        check_user_options(config, options, groups, self.user.name)
        return env, size

    async def start(self) -> Any:
        env, size = self.check_options(dict(self.user_options or {}))
        self._choice = (env, size)
        self.cpu_limit = float(size.cpu)
        self.mem_limit = parse_quantity(size.memory)
        return await super().start()

    def get_env(self) -> dict[str, Any]:
        env = super().get_env()
        choice = getattr(self, "_choice", None)
        if choice is not None:
            environment, size = choice
            env.update({"MLP_ENVIRONMENT": environment.name, "MLP_HARDWARE": size.name,
                        "MLP_TENSORBOARD": "1" if environment.tensorboard else "0",
                        # the size's GPUs and no others, as in a pod (not exclusive between users here)
                        "CUDA_VISIBLE_DEVICES": ",".join(gpu.uuid for gpu in machine_gpus()[: size.gpus or 0])})
            if self.container_engine:
                env["MLP_IMAGE"] = environment.image
        if self.platform_url:
            env["MLP_URL"] = self.platform_url
        if self.api_token:
            env["MLP_TOKEN"] = self.api_token
        if self.platform_data_dir:
            env["MLP_DATA_DIR"] = self.platform_data_dir
        if self.hub_public_url:
            env["MLP_PUBLIC_URL"] = self.hub_public_url
        return env

    def get_args(self) -> list[str]:
        args = super().get_args()
        if os.getuid() == 0:
            args.append("--allow-root")
        return args
