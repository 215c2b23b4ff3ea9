"""Top-level statements of a cell: their source, and which of them the generated module keeps.

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_UPPER = re.compile(r"^_*[A-Z][A-Z0-9_]*$")


@dataclass
class _Stmt:
    cell: int
    node: ast.stmt
    text: str  # source of the statement alone (decorators included)
    start: int  # first line within its cell (decorators included)
    end: int  # last line within its cell
    own_lines: bool  # no other statement shares its lines: copy whole lines
    kept: bool
    binds: frozenset[str] = frozenset()
    now_refs: frozenset[str] = frozenset()  # globals read when the statement runs (module load)
    later_refs: frozenset[str] = frozenset()  # globals read by the functions it defines, when called
    global_binds: frozenset[str] = frozenset()  # names its functions assign through `global`


@dataclass
class _Drop:
    cell: int
    line: int
    category: str  # "exploratory" | "skip" | "magic" | "shell"
    magic: str = ""


def _first_line(node: ast.stmt) -> int:
    decorators = getattr(node, "decorator_list", None) or []
    return min([node.lineno] + [d.lineno for d in decorators])


def _segment(text: str, node: ast.stmt) -> str | None:
    """The statement's exact source, decorators included."""
    decorators = getattr(node, "decorator_list", None) or []
    if decorators:
        lines = text.split("\n")
        return "\n".join(lines[_first_line(node) - 1 : node.end_lineno])
    return ast.get_source_segment(text, node)


def _short(text: str, limit: int = 60) -> str:
    first = text.strip().split("\n", 1)[0].strip()
    if "\n" in text.strip():
        first += " ..."
    return first if len(first) <= limit else first[: limit - 3].rstrip() + "..."


def _harmless(node: ast.stmt) -> bool:
    """Statements that are neither kept nor worth reporting."""
    return isinstance(node, ast.Pass) or (
        isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)
    )


def _keep_top_level(node: ast.stmt) -> bool:
    if isinstance(node, (ast.Import, ast.ImportFrom, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return True
    if _harmless(node):
        return True  # docstrings and `pass` run nothing
    if isinstance(node, ast.Try):
        return bool(node.body) and all(isinstance(b, (ast.Import, ast.ImportFrom)) for b in node.body)
    if isinstance(node, ast.Assign):
        return _is_constant(node.targets, node.value)
    if isinstance(node, ast.AnnAssign):
        return node.value is not None and node.simple == 1 and _is_constant([node.target], node.value)
    return False


def _target_names(target: ast.expr) -> list[str] | None:
    """Names a plain-name target assigns (unpacking allowed); None for attributes, subscripts."""
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    if isinstance(target, (ast.Tuple, ast.List)):
        names: list[str] = []
        for elt in target.elts:
            sub = _target_names(elt)
            if sub is None:
                return None
            names.extend(sub)
        return names
    return None


def _is_constant(targets: list[ast.expr], value: ast.expr) -> bool:
    names: list[str] = []
    for target in targets:
        sub = _target_names(target)
        if sub is None:
            return False
        names.extend(sub)
    if not names:
        return False
    try:
        ast.literal_eval(value)
        return True
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        pass
    return all(_UPPER.match(n) for n in names) and _runs_nothing(value)


def _runs_nothing(node: ast.AST) -> bool:
    """No call, await, yield or walrus in the expression (lambda bodies run later and do not count)."""
    if isinstance(node, (ast.Call, ast.Await, ast.Yield, ast.YieldFrom, ast.NamedExpr)):
        return False
    if isinstance(node, ast.Lambda):
        return _runs_nothing(node.args)
    return all(_runs_nothing(child) for child in ast.iter_child_nodes(node))
