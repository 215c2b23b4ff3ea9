"""The admin's platform config (`platform.yaml`): environments and hardware sizes.

Validated with pydantic; every error names the offending key path, e.g.
``hardware[2].memory: not a memory quantity: '2 GB' (expected e.g. 512Mi, 2Gi)``.
"""

from __future__ import annotations

import functools
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .backends.base import Hardware, parse_quantity
from .builders.layer import HistoryMode
from .errors import ConfigError

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
_GROUP = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,254}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (lowercase letters, digits and '-', at most 63 characters)"
        )
    return value


def _check_quantity(value: str | None) -> str | None:
    """A Kubernetes quantity such as 4Gi (None: unset)."""
    if value is not None:
        parse_quantity(value)
    return value


class Environment(_Strict):
    name: str
    image: str
    display_name: str | None = None
    description: str = ""
    default: bool = False
    tensorboard: bool = False

    _name = field_validator("name")(_check_name)

    def to_json(self) -> dict[str, Any]:
        return dict(self._json)

    @functools.cached_property
    def _json(self) -> dict[str, Any]:  # frozen: dumped once, not for every run recorded with it
        data = self.model_dump()
        data["display_name"] = self.display_name or self.name
        return data


class Toleration(_Strict):
    key: str | None = None
    operator: str = "Equal"
    value: str | None = None
    effect: str | None = None


class HardwareSize(_Strict):
    name: str
    display_name: str | None = None
    cpu: float = Field(gt=0)
    memory: str
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    nodes: int = Field(default=1, ge=1)
    node_selector: dict[str, str] = Field(default_factory=dict)
    tolerations: list[Toleration] = Field(default_factory=list)
    cost_per_hour: float | None = Field(default=None, ge=0)
    default: bool = False
    # Hub (notebook servers): only members of one of these JupyterHub groups may pick this size
    # (empty: everyone); what a notebook is guaranteed, below its limits `cpu` / `memory`
    # (unset: the limits themselves).
    groups: list[str] = Field(default_factory=list)
    cpu_guarantee: float | None = Field(default=None, gt=0)
    memory_guarantee: str | None = None

    _name = field_validator("name")(_check_name)
    _quantities = field_validator("memory", "memory_guarantee")(_check_quantity)

    @field_validator("groups")
    @classmethod
    def _groups(cls, value: list[str]) -> list[str]:
        for group in value:
            if not _GROUP.match(group):
                raise ValueError(
                    f"{group!r} is not a valid JupyterHub group name (letters, digits, '.', '_', '@' or '-')")
        return value

    @model_validator(mode="after")
    def _guarantees_within_limits(self) -> "HardwareSize":
        if self.cpu_guarantee is not None and self.cpu_guarantee > self.cpu:
            raise ValueError(f"cpu_guarantee {self.cpu_guarantee} is above cpu {self.cpu} (the limit)")
        if self.memory_guarantee is not None and parse_quantity(self.memory_guarantee) > parse_quantity(self.memory):
            raise ValueError(f"memory_guarantee {self.memory_guarantee} is above memory {self.memory} (the limit)")
        return self

    def to_hardware(self) -> Hardware:
        return self._hardware

    @functools.cached_property
    def _hardware(self) -> Hardware:  # frozen (as Hardware is): made once, not for every run
        return Hardware(
            name=self.name,
            cpu=self.cpu,
            memory=self.memory,
            gpus=self.gpus,
            gpu_type=self.gpu_type,
            node_selector=dict(self.node_selector),
            tolerations=[t.model_dump(exclude_none=True) for t in self.tolerations],
            nodes=self.nodes,
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self._json)

    @functools.cached_property
    def _json(self) -> dict[str, Any]:  # frozen: dumped once, not for every run recorded with it
        data = self.model_dump()
        data["display_name"] = self.display_name or self.name
        return data


class BuildKitSettings(_Strict):
    """The `buildkit` builder's Job (kubernetes backend; see builders/buildkit.py). ``image`` is a
    rootless BuildKit image, best mirrored into the cluster's own registry. ``push_secret``: an
    existing ``kubernetes.io/dockerconfigjson`` Secret to push with (else one is made per build
    from the server's --registry-auth file). ``labels`` / ``annotations`` go on the build pod."""

    image: str = "moby/buildkit:v0.24.0-rootless"
    cpu: float = Field(default=2, gt=0)
    memory: str = "4Gi"
    ephemeral_storage: str = "20Gi"
    timeout_seconds: int = Field(default=1800, ge=60)
    ttl_seconds: int = Field(default=600, ge=0)
    push_secret: str | None = None
    image_pull_secrets: list[str] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    _quantities = field_validator("memory", "ephemeral_storage")(_check_quantity)


class LayerSettings(_Strict):
    """The `layer` builder (builders/layer.py). ``history``: ``compact`` (per base layer only its
    date; the commands stay on the base image, named by digest in the manifest) or ``full`` (the
    base's history as it is plus the code layer's entry: ≈ 2.2 KB more per build on the python
    environment)."""

    history: HistoryMode = "compact"


class BuildersConfig(_Strict):
    layer: LayerSettings = Field(default_factory=LayerSettings)
    buildkit: BuildKitSettings = Field(default_factory=BuildKitSettings)


class KubernetesSettings(_Strict):
    """Where the kubernetes backend keeps users' objects (`mlp server` options override these):
    one ``namespace``, or ``namespace_per_user``: ``<namespace_prefix><user>`` each, made by an
    admin (backends/kubernetes/namespaces.py; README "One namespace per user")."""

    namespace: str | None = None
    namespace_per_user: bool = False
    namespace_prefix: str | None = None

    @field_validator("namespace")
    @classmethod
    def _namespace(cls, value: str | None) -> str | None:
        return _check_name(value) if value is not None else None

    @field_validator("namespace_prefix")
    @classmethod
    def _prefix(cls, value: str | None) -> str | None:
        from .backends.kubernetes.namespaces import validate_prefix

        return validate_prefix(value) if value is not None else None

    @model_validator(mode="after")
    def _one_mode(self) -> "KubernetesSettings":
        if self.namespace and self.namespace_per_user:
            raise ValueError("namespace and namespace_per_user exclude each other: one namespace for everyone, "
                             "or one per user")
        if self.namespace_prefix and not self.namespace_per_user:
            raise ValueError("namespace_prefix needs namespace_per_user: true")
        return self


class PlatformConfig(_Strict):
    environments: list[Environment] = Field(min_length=1)
    hardware: list[HardwareSize] = Field(min_length=1)
    builders: BuildersConfig = Field(default_factory=BuildersConfig)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)

    @model_validator(mode="after")
    def _unique_and_defaults(self) -> "PlatformConfig":
        for kind, items in (("environments", self.environments), ("hardware", self.hardware)):
            names = [item.name for item in items]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"{kind}: duplicate name(s) {', '.join(dupes)}")
            if sum(1 for item in items if item.default) > 1:
                raise ValueError(f"{kind}: more than one entry has default: true")
        return self

    def environment(self, name: str | None) -> Environment:
        if name is None:
            return next((e for e in self.environments if e.default), self.environments[0])
        for env in self.environments:
            if env.name == name:
                return env
        known = ", ".join(e.name for e in self.environments)
        raise ConfigError(f"Unknown environment {name!r}: choose one of {known}", name=name)

    def hardware_size(self, name: str | None) -> HardwareSize:
        if name is None:
            return next((h for h in self.hardware if h.default), self.hardware[0])
        for size in self.hardware:
            if size.name == name:
                return size
        known = ", ".join(h.name for h in self.hardware)
        raise ConfigError(f"Unknown hardware size {name!r}: choose one of {known}", name=name)

    def to_json(self) -> dict[str, Any]:
        return {
            "environments": [e.to_json() for e in self.environments],
            "hardware": [h.to_json() for h in self.hardware],
        }


def _location(loc: tuple[Any, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def parse_config(data: Any, source: str = "platform config") -> PlatformConfig:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping with 'environments' and 'hardware'")
    try:
        return PlatformConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key"
            problems.append(f"{_location(err['loc'])}: {msg}")
        raise ConfigError(f"{source}: " + "; ".join(problems), problems=problems) from None


def load_config(path: str | Path | None = None) -> PlatformConfig:
    """The config at `path`, or the shipped default."""
    if path is None:
        text = resources.files("mlplatform_server").joinpath("default_platform.yaml").read_text()
        source = "default platform.yaml"
    else:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"Cannot read platform config {source}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML: {exc}") from None
    return parse_config(data, source)
