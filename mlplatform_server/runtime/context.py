"""Configuration (environment variables and flags), loading the user's module, building its Model.

Standard library and ``mlplatform_server.errors`` only.
"""

from __future__ import annotations

import copy
import importlib.util
import inspect
import json
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..errors import ConfigError, ContractError

MODULE_NAME = "mlp_user_model"
ACTIONS = ("train", "batch-predict", "serve")
METHODS = {"train": "train", "batch-predict": "batch_predict", "serve": "predict"}

# option name (argparse dest) → environment variable
ENV_VARS = {
    "module_path": "MLP_MODULE_PATH",
    "hyperparameters": "MLP_HYPERPARAMETERS",
    "artifacts": "MLP_ARTIFACTS",
    "run_id": "MLP_RUN_ID",
    "url": "MLP_URL",
    "run_token": "MLP_RUN_TOKEN",
    "run_token_file": "MLP_RUN_TOKEN_FILE",
    "inputs": "MLP_INPUTS",
    "outputs": "MLP_OUTPUTS",
    "result_path": "MLP_RESULT_PATH",
    "port": "MLP_PORT",
    "host": "MLP_HOST",
    "workers": "MLP_WORKERS",
}
MAX_REASON = 500


class ModuleLoadError(ContractError):
    """The user's module raised (or could not be found) while being imported."""


def option(name: str, flags: Mapping[str, Any] | None, environ: Mapping[str, str]) -> str | None:
    """A flag wins over its environment variable; empty strings count as unset."""
    value = (flags or {}).get(name)
    if value is None or value == "":
        value = environ.get(ENV_VARS[name]) or None
    return None if value is None else str(value)


def _describe(name: str) -> str:
    return f"{ENV_VARS[name]} (or --{name.replace('_', '-')})"


@dataclass(frozen=True)
class RuntimeConfig:
    action: str
    module_path: Path
    artifacts: Path
    hyperparameters: dict[str, Any] | None
    run_id: str | None = None
    url: str | None = None
    token: str | None = None
    token_file: Path | None = None  # re-read on every use: Kubernetes rotates projected tokens
    inputs: Path | None = None
    outputs: Path | None = None
    result_path: Path | None = None
    port: int = 8080
    host: str = "0.0.0.0"
    workers: int = 1

    def __repr__(self) -> str:  # never show the token
        return f"RuntimeConfig(action={self.action!r}, module_path={str(self.module_path)!r}, run_id={self.run_id!r})"

    @classmethod
    def load(cls, action: str, flags: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> "RuntimeConfig":
        """Read and check the configuration; raises ConfigError naming the variable."""
        if action not in ACTIONS:
            raise ConfigError(f"Unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        env = os.environ if environ is None else environ

        def get(name: str) -> str | None:
            return option(name, flags, env)

        module = get("module_path")
        if not module:
            raise ConfigError(f"{_describe('module_path')} is not set: the path of the model module")
        module_path = Path(module).expanduser().resolve()
        if not module_path.is_file():
            raise ConfigError(f"Model module {str(module_path)!r} ({ENV_VARS['module_path']}) does not exist")

        artifacts_raw = get("artifacts")
        if not artifacts_raw:
            raise ConfigError(f"{_describe('artifacts')} is not set: the artifacts directory")
        artifacts = Path(artifacts_raw).expanduser().resolve()
        if action != "train" and not artifacts.is_dir():
            raise ConfigError(
                f"Artifacts directory {str(artifacts)!r} ({ENV_VARS['artifacts']}) does not exist; "
                f"{action} needs the artifacts of a finished training run"
            )

        hp_raw = get("hyperparameters")
        hyperparameters = None
        if hp_raw is not None:
            try:
                hyperparameters = json.loads(hp_raw)
            except ValueError as exc:
                raise ConfigError(f"{_describe('hyperparameters')} is not valid JSON: {exc}") from None
            if not isinstance(hyperparameters, dict):
                raise ConfigError(
                    f"{_describe('hyperparameters')} must be a JSON object of name → value, "
                    f"got {type(hyperparameters).__name__}"
                )

        def path(name: str) -> Path | None:
            value = get(name)
            return Path(value).expanduser().resolve() if value else None

        port = _int_option(get("port"), "port", 8080, 0, 65535)
        workers = _int_option(get("workers"), "workers", 1, 1, 512)
        url = get("url")
        return cls(
            action=action,
            module_path=module_path,
            artifacts=artifacts,
            hyperparameters=hyperparameters,
            run_id=get("run_id"),
            url=url.rstrip("/") if url else None,
            token=get("run_token"),
            token_file=path("run_token_file"),
            inputs=path("inputs"),
            outputs=path("outputs"),
            result_path=path("result_path"),
            port=port,
            host=get("host") or "0.0.0.0",
            workers=workers,
        )


def _int_option(raw: str | None, name: str, default: int, low: int, high: int) -> int:
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(f"{_describe(name)} must be an integer from {low} to {high}, got {raw!r}")
    return value


def one_line(text: str, limit: int = MAX_REASON) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe_exception(exc: BaseException) -> str:
    """``"<ExcType>: <message>"`` on one line, at most MAX_REASON characters."""
    message = str(exc)
    name = type(exc).__name__
    return one_line(f"{name}: {message}" if message.strip() else name)


def load_module(path: Path) -> ModuleType:
    """Import the user's module as ``mlp_user_model``, its directory first on sys.path.

    Any exception (including SystemExit from module-level code) becomes ModuleLoadError,
    with the original traceback printed to stderr.
    """
    directory = str(path.parent)
    if not sys.path or sys.path[0] != directory:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(MODULE_NAME, path)
    if spec is None or spec.loader is None:
        raise ModuleLoadError(f"Could not load the model module: {str(path)!r} is not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[MODULE_NAME] = module  # so pickling and dataclasses can find it
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as exc:
        sys.modules.pop(MODULE_NAME, None)
        traceback.print_exc(file=sys.stderr)
        raise ModuleLoadError(one_line(f"Could not load the model module: {describe_exception(exc)}")) from exc
    return module


def model_class(module: ModuleType) -> type:
    cls = getattr(module, "Model", None)
    if cls is None:
        raise ContractError("The model module defines no class Model")
    if not inspect.isclass(cls):
        raise ContractError(f"Model in the model module is a {type(cls).__name__}, not a class")
    return cls


def _accepts_hyperparameters(cls: type) -> bool:
    try:
        parameters = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        return False
    param = parameters.get("hyperparameters")
    return param is not None and param.kind in (param.POSITIONAL_OR_KEYWORD, param.KEYWORD_ONLY)


def default_hyperparameters(cls: type) -> dict[str, Any]:
    defaults = getattr(cls, "hyperparameters", None)
    if not isinstance(defaults, dict):
        return {}
    try:
        return copy.deepcopy(defaults)
    except Exception:
        return dict(defaults)


def build_model(module: ModuleType, config: RuntimeConfig, log_metric: Callable[..., None]) -> Any:
    """Create the user's Model and give it what DESIGN.md §1 promises.

    Contract problems raise ContractError; an exception from the user's ``__init__``
    propagates unchanged (it is the user's error).
    """
    cls = model_class(module)
    hp = config.hyperparameters if config.hyperparameters is not None else default_hyperparameters(cls)
    model = cls(hyperparameters=hp) if _accepts_hyperparameters(cls) else cls()
    given = {
        "hyperparameters": hp,
        "artifacts": config.artifacts,
        "log_metric": log_metric,
        "run_id": config.run_id,
        "inputs": config.inputs,
        "outputs": config.outputs,
    }
    for name, value in given.items():
        try:
            setattr(model, name, value)
        except (AttributeError, TypeError) as exc:
            raise ContractError(f"Could not set Model.{name} ({describe_exception(exc)}); "
                                f"the platform sets this attribute, do not make it read-only") from None
    return model


def method(model: Any, name: str, required: bool = True) -> Callable[[], Any] | None:
    fn = getattr(model, name, None)
    if fn is None or not callable(fn):
        if required:
            raise ContractError(f"Model has no {name} method")
        return None
    return fn
