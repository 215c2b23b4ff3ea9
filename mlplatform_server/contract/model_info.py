"""What `extract` returns: the hyperparameters, cell reports and module of a notebook.

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Hyperparameter:
    """One entry of `Model.hyperparameters`; its type comes from the default."""

    name: str
    type: str  # "int" | "float" | "bool" | "str" | "list" | "dict" | "any" (default None)
    default: Any

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "type": self.type, "default": copy.deepcopy(self.default)}


@dataclass(frozen=True)
class CellReport:
    """What happened to one code cell."""

    index: int  # 1-based position among all cells of the notebook; 1 for a .py file
    kept: bool  # whether any of its code is in the module
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "kept": self.kept, "reason": self.reason}


@dataclass(frozen=True)
class ModelInfo:
    """What `extract` learned about a notebook, and the module it generated."""

    module_source: str
    content_hash: str
    hyperparameters: tuple[Hyperparameter, ...]
    methods: frozenset[str]
    inherits_unknown: bool
    cells: tuple[CellReport, ...]
    warnings: tuple[str, ...]

    def schema(self) -> dict[str, Hyperparameter]:
        return {h.name: h for h in self.hyperparameters}

    def defaults(self) -> dict[str, Any]:
        return {h.name: copy.deepcopy(h.default) for h in self.hyperparameters}

    def to_json(self) -> dict[str, Any]:
        return {
            "hyperparameters": [h.to_json() for h in self.hyperparameters],
            "methods": sorted(self.methods),
            "inherits_unknown": self.inherits_unknown,
            "warnings": list(self.warnings),
            "cells": [c.to_json() for c in self.cells],
            "content_hash": self.content_hash,
            "module_source": self.module_source,
        }
