"""Which `Model` methods each action calls, and refusing an action whose method is missing.

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

from ..errors import ContractError
from .model_info import ModelInfo

#: The methods of `Model` each action calls.
ACTION_METHODS: dict[str, tuple[str, ...]] = {
    "train": ("train",),
    "batch-predict": ("batch_predict",),
    "serve": ("predict",),
}


def require_method(info: ModelInfo, action: str) -> None:
    """Refuse an action whose method `Model` lacks (unless Model inherits from a class we cannot read)."""
    key = action.replace("_", "-") if isinstance(action, str) else action
    methods = ACTION_METHODS.get(key)
    if methods is None:
        raise ContractError(
            f"Unknown action {action!r}: expected one of {', '.join(ACTION_METHODS)}", action=action
        )
    if info.inherits_unknown:
        return
    for method in methods:
        if method not in info.methods:
            signature = "self, features" if method == "predict" else "self"
            raise ContractError(
                f"Model has no {method} method, which the {key} action calls: "
                f"define `def {method}({signature}):` in class Model",
                action=key,
                method=method,
            )
