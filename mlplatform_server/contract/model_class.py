"""Reading `class Model`: its methods and `hyperparameters` attribute, following the base classes
the module defines, and the warnings about methods it lacks.

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from typing import Iterable

from .names import _BUILTINS
from .statements import _Stmt, _target_names

#: Bases that add no methods: a Model deriving from them still has a fully known set of methods.
_EMPTY_BASES = frozenset(
    {"object", "abc.ABC", "typing.Generic", "typing.Protocol", "typing_extensions.Protocol"}
)


def _import_origins(kept: Iterable[_Stmt]) -> dict[str, str]:
    """Top-level name → dotted origin, for names bound by imports (`ABC` → `abc.ABC`)."""
    origins: dict[str, str] = {}
    for s in kept:
        nodes = [s.node] + (list(s.node.body) if isinstance(s.node, ast.Try) else [])
        for node in nodes:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    origins[alias.asname or alias.name.split(".")[0]] = alias.name if alias.asname else alias.name.split(".")[0]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    origins[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return origins


def _dotted(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else None
    return None


@dataclass
class _Resolver:
    """Methods and the hyperparameters attribute of Model, following bases defined in the module."""

    classes: dict[str, _Stmt]
    imports: dict[str, str]
    defined: set[str]

    def walk(self, model: _Stmt) -> tuple[set[str], list[str], tuple[_Stmt, ast.stmt] | None]:
        methods: set[str] = set()
        unknown: list[str] = []
        hp: tuple[_Stmt, ast.stmt] | None = None
        seen: set[str] = set()

        def visit(stmt: _Stmt) -> None:
            nonlocal hp
            node = stmt.node
            assert isinstance(node, ast.ClassDef)
            seen.add(node.name)
            methods.update(_class_methods(node))
            if hp is None:
                found = _hyperparameters_node(node)
                if found is not None:
                    hp = (stmt, found)
            for base in node.bases:
                if isinstance(base, ast.Subscript):
                    base = base.value
                name = _dotted(base)
                if name is None:
                    unknown.append(ast.unparse(base) if hasattr(ast, "unparse") else "a base class")
                    continue
                origin = self.imports.get(name.split(".")[0])
                full = origin + name[len(name.split(".")[0]):] if origin else name
                if name in self.classes and name not in self.imports:
                    if name not in seen:
                        visit(self.classes[name])
                elif full in _EMPTY_BASES or (name in _BUILTINS and name not in self.defined):
                    continue
                else:
                    unknown.append(name)

        visit(model)
        return methods, unknown, hp


def _class_methods(node: ast.ClassDef) -> set[str]:
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
            names.add(item.name)
    for item in node.body:  # aliases: `predict = batch_predict`, `predict = lambda self, x: ...`
        if isinstance(item, ast.Assign) and (
            isinstance(item.value, ast.Lambda) or (isinstance(item.value, ast.Name) and item.value.id in names)
        ):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return names


def _hyperparameters_node(node: ast.ClassDef) -> ast.stmt | None:
    found = None
    for item in node.body:
        if isinstance(item, ast.Assign) and any(
            "hyperparameters" in (_target_names(t) or []) for t in item.targets
        ):
            found = item
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name) and item.target.id == "hyperparameters":
            found = item
    return found


def _method_warnings(methods: set[str], unknown_bases: list[str]) -> list[str]:
    if unknown_bases:
        return [
            f"Model inherits from {', '.join(unknown_bases)}, which the platform cannot read: "
            "the methods it provides are not checked before a run starts"
        ]
    warnings = []
    if "train" not in methods:
        warnings.append("Model has no train method: cannot be trained")
    if "batch_predict" not in methods:
        warnings.append("Model has no batch_predict method: cannot run batch prediction")
    if "predict" not in methods:
        warnings.append("Model has no predict method: cannot be deployed")
    elif "init_predict" not in methods:
        warnings.append("Model has no init_predict; serving will call predict without it")
    return warnings
