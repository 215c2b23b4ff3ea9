"""Domain errors. The API maps each to an HTTP status with a JSON body; the CLI to a one-line message.

Only standard library here: the runtime imports it inside minimal images.
"""

from __future__ import annotations

from typing import Any


class PlatformError(Exception):
    """Base of every error a user can cause. `message` is shown as is."""

    status = 500
    code = "internal"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(PlatformError):
    status = 400
    code = "invalid_input"


class ContractError(InvalidInput):
    """The notebook or module breaks the model contract (DESIGN.md §1)."""

    code = "contract_error"


class HyperparameterError(InvalidInput):
    code = "invalid_hyperparameter"


class ConfigError(InvalidInput):
    code = "invalid_config"


class Unauthorized(PlatformError):
    status = 401
    code = "unauthorized"


class Forbidden(PlatformError):
    status = 403
    code = "forbidden"


class NotFound(PlatformError):
    status = 404
    code = "not_found"


class Conflict(PlatformError):
    status = 409
    code = "conflict"


class NotSupported(PlatformError):
    """Asked of a configuration that cannot answer it (e.g. artifacts kept in object storage)."""

    status = 501
    code = "not_supported"


class BackendError(PlatformError):
    status = 502
    code = "backend_error"
