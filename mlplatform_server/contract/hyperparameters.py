"""Hyperparameters: the schema read from `Model.hyperparameters`, their types, and coercing overrides.

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

import ast
import copy
import json
import math
import re
from typing import Any, Mapping

from ..errors import ContractError, HyperparameterError
from .model_info import Hyperparameter
from .statements import _Stmt, _short

#: The types a hyperparameter can have (from its default; None gives "any").
HYPERPARAMETER_TYPES = ("int", "float", "bool", "str", "list", "dict", "any")
_TRUE = frozenset({"true", "yes", "1", "on"})
_FALSE = frozenset({"false", "no", "0", "off"})


def coerce_hyperparameters(schema: Mapping[str, Hyperparameter], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The defaults of `schema` merged with `overrides`, each coerced to its hyperparameter's type.

    An override is either a string (from the CLI, `--hp C=0.5`) or an already typed JSON value
    (from the REST API). Floats must be finite: NaN and infinities are refused, typed or as
    strings, because they have no JSON form and would not survive being stored with the run.
    """
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise HyperparameterError(
            "Hyperparameters must be an object mapping names to values", value=_jsonable(overrides)
        )
    result = {name: copy.deepcopy(h.default) for name, h in schema.items()}
    for key, value in overrides.items():
        hp = schema.get(key) if isinstance(key, str) else None
        if hp is None:
            known = list(schema)
            defined = (
                f"Model.hyperparameters defines {', '.join(known)}"
                if known
                else "Model defines no hyperparameters"
            )
            raise HyperparameterError(f"Unknown hyperparameter {key!r}: {defined}", name=key, known=known)
        result[key] = _coerce(hp, value)
    return result


_NOT_LITERAL = object()


class _HyperparameterReading:
    """Reading the schema for `_Builder` (extraction.py), which mixes this in.

    Uses the builder's `notebook`, `cell_lines` and `_where`.
    """

    notebook: bool
    cell_lines: dict[int, list[str]]

    def _hyperparameters(
        self, model: _Stmt, hp_source: tuple[_Stmt, ast.stmt] | None, unknown_bases: list[str]
    ) -> tuple[list[Hyperparameter], list[str]]:
        warnings: list[str] = []
        if hp_source is None:
            if unknown_bases:
                warnings.append(
                    "Model defines no hyperparameters dict; any that "
                    f"{', '.join(unknown_bases)} defines cannot be read, so no override is accepted"
                )
            else:
                warnings.append(
                    "Model has no hyperparameters dict: runs get an empty one and no override is accepted"
                )
            return [], warnings
        stmt, node = hp_source
        value = node.value
        where = self._where(stmt.cell, node.lineno)
        location = {"cell": stmt.cell, "line": node.lineno} if self.notebook else {"line": node.lineno}
        unpacked = isinstance(node, ast.Assign) and not all(isinstance(t, ast.Name) for t in node.targets)
        try:
            # `hyperparameters, other = ...` cannot be read as a dict either
            defaults = _NOT_LITERAL if unpacked or value is None else ast.literal_eval(value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            defaults = _NOT_LITERAL
        if not isinstance(defaults, dict):
            found = _short(ast.get_source_segment(self._cell_text(stmt.cell), value) or "") if value is not None else ""
            raise ContractError(
                "Model.hyperparameters must be a literal dict of names and default values "
                '(e.g. {"C": 1.0, "max_iter": 200}) so it can be read without running the notebook; '
                f"found `{found}` in {where}",
                **location,
            )
        result = []
        for key, default in defaults.items():
            if not isinstance(key, str):
                raise ContractError(
                    f"Model.hyperparameters has a non-string name {key!r} in {where}: names must be strings",
                    **location,
                )
            problem = _json_problem(default)
            if problem:
                raise ContractError(
                    f"Hyperparameter {key!r} has a default that is {problem} in {where}: defaults must be "
                    "int, float, bool, str, None, or lists and dicts of those",
                    name=key,
                    **location,
                )
            default = _lists(default)
            result.append(Hyperparameter(key, _type_of(default), default))
        return result, warnings

    def _cell_text(self, cell: int) -> str:
        return "\n".join(self.cell_lines.get(cell, []))


def _type_of(value: Any) -> str:
    if value is None:
        return "any"
    if isinstance(value, bool):  # before int: bool is an int subclass
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, (list, tuple)):
        return "list"
    return "dict"


def _json_problem(value: Any) -> str | None:
    """Why a default cannot be a hyperparameter value (None when it can)."""
    if value is None or isinstance(value, (bool, int, str)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"not a finite number ({value!r})"
    if isinstance(value, (list, tuple)):
        for item in value:
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    if isinstance(value, dict):
        for k, item in value.items():
            if not (k is None or isinstance(k, (str, int, float, bool))):
                return f"a dict with a {type(k).__name__} key"
            problem = _json_problem(item)
            if problem:
                return problem
        return None
    return f"a {type(value).__name__}"


def _lists(value: Any) -> Any:
    """Tuples become lists (their JSON form), recursively."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: _lists(v) for k, v in value.items()}
    return value


def _jsonable(value: Any) -> Any:
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return repr(value)


def _coerce(hp: Hyperparameter, value: Any) -> Any:
    def fail(hint: str = "") -> HyperparameterError:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        return HyperparameterError(
            f"Hyperparameter {hp.name!r} expects {hp.type} (default {_default_text(hp.default)}), got {shown}{hint}",
            name=hp.name,
            expected=hp.type,
            value=_jsonable(value),
        )

    kind = hp.type
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            return int(value)
        raise fail()
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):
            try:
                number = float(value.strip())
            except ValueError:
                raise fail() from None
        else:
            raise fail()
        if not math.isfinite(number):
            raise fail(" (not a finite number)")
        return number
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str):
            word = value.strip().lower()
            if word in _TRUE:
                return True
            if word in _FALSE:
                return False
        raise fail(" (use true/false, yes/no, on/off or 1/0)")
    if kind == "str":
        if isinstance(value, str):
            return value
        raise fail()
    if kind in ("list", "dict"):
        wanted: type = list if kind == "list" else dict
        example = "[1, 2]" if kind == "list" else '{"a": 1}'
        if isinstance(value, tuple) and kind == "list":
            return list(value)
        if isinstance(value, wanted):
            return value
        if isinstance(value, str):
            try:
                parsed = json.loads(value)
            except ValueError:
                raise fail(f" (write it as JSON, e.g. {example})") from None
            if isinstance(parsed, wanted):
                return parsed
        raise fail(f" (write it as JSON, e.g. {example})")
    # "any": strings that are JSON become their value; anything else is taken as given
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _default_text(default: Any) -> str:
    try:
        return json.dumps(default)
    except (TypeError, ValueError):
        return repr(default)
