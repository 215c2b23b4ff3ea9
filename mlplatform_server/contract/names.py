"""Undefined-name analysis (symtable): the globals each kept statement binds and reads, and the check
that the module defines every name it uses, above its use.

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

import ast
import builtins
import copy
import re
import symtable
from typing import Any

from ..errors import ContractError
from .notebook import INCLUDE_TAG, SKIP_TAG
from .statements import _Drop, _Stmt

#: Names an imported module always has, besides the builtins.
_MODULE_NAMES = frozenset(
    {"__name__", "__file__", "__doc__", "__builtins__", "__spec__", "__loader__", "__package__",
     "__annotations__", "__cached__"}
)
_BUILTINS = frozenset(dir(builtins)) | _MODULE_NAMES

#: Names that exist in an IPython kernel but not in an imported module.
_IPYTHON_NAMES = frozenset({"display", "get_ipython", "In", "Out", "_ih", "_oh", "_dh"})

_COMPREHENSIONS = frozenset({"listcomp", "setcomp", "dictcomp", "genexpr"})


def _table_type(table: symtable.SymbolTable) -> str:
    return str(table.get_type()).lower().rsplit(".", 1)[-1]


def _lazy(table: symtable.SymbolTable) -> bool:
    """A scope whose code runs later (a function, lambda or lazily evaluated annotation)."""
    kind = _table_type(table)
    if kind == "function":
        return table.get_name() not in _COMPREHENSIONS
    return kind == "annotation"


class _WithoutAnnotations(ast.NodeTransformer):
    """Under `from __future__ import annotations` annotations are never evaluated: blank them."""

    def visit_arg(self, node: ast.arg) -> ast.arg:
        node.annotation = None
        return node

    def visit_FunctionDef(self, node: Any) -> Any:
        node.returns = None
        self.generic_visit(node)
        return node

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> ast.AnnAssign:
        node.annotation = ast.Constant("")
        self.generic_visit(node)
        return node


def _analyse(stmt: _Stmt, future_annotations: bool) -> None:
    source = stmt.text
    if future_annotations:
        if hasattr(ast, "unparse"):
            tree = _WithoutAnnotations().visit(copy.deepcopy(ast.Module(body=[stmt.node], type_ignores=[])))
            source = ast.unparse(ast.fix_missing_locations(tree))
        else:  # Python 3.8: the symtable of recent versions already skips them; best effort
            source = "from __future__ import annotations\n" + source
    try:
        top = symtable.symtable(source, "<statement>", "exec")
    except (SyntaxError, ValueError):
        return
    binds = set()
    now: set[str] = set()
    later: set[str] = set()
    global_binds: set[str] = set()
    for sym in top.get_symbols():
        if sym.is_assigned() or sym.is_imported():
            binds.add(sym.get_name())
        if sym.is_referenced():
            now.add(sym.get_name())

    def visit(table: symtable.SymbolTable, deferred: bool) -> None:
        for sym in table.get_symbols():
            if sym.is_declared_global() and (sym.is_assigned() or sym.is_imported()):
                global_binds.add(sym.get_name())
            if sym.is_referenced() and sym.is_global():
                (later if deferred else now).add(sym.get_name())
        for child in table.get_children():
            visit(child, deferred or _lazy(child))

    for child in top.get_children():
        visit(child, _lazy(child))
    if future_annotations and not re.search(r"\bannotations\b", stmt.text):
        binds.discard("annotations")  # bound by the prefix above, not by the statement
    stmt.binds = frozenset(binds)
    stmt.now_refs = frozenset(now)
    stmt.later_refs = frozenset(later)
    stmt.global_binds = frozenset(global_binds)


def _bindings(text: str) -> set[str]:
    """Module-level names a statement binds (best effort: empty when it does not compile)."""
    try:
        top = symtable.symtable(text, "<statement>", "exec")
    except (SyntaxError, ValueError):
        return set()
    names = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}

    def visit(table: symtable.SymbolTable) -> None:
        for sym in table.get_symbols():
            if sym.is_declared_global() and (sym.is_assigned() or sym.is_imported()):
                names.add(sym.get_name())
        for child in table.get_children():
            visit(child)

    for child in top.get_children():
        visit(child)
    return names


class _NameChecks:
    """The name checks of `_Builder` (extraction.py), which mixes this in.

    Uses the builder's `name` (file name), `notebook` (whether it reads a notebook) and `drops`
    (name → where a dropped statement assigned it).
    """

    name: str
    notebook: bool
    drops: dict[str, list[_Drop]]

    def _check_names(self, kept: list[_Stmt], model: _Stmt) -> list[str]:
        """Refuse names the module would look up but never define; returns warnings."""
        binders: dict[str, list[_Stmt]] = {}
        for s in kept:
            for n in s.binds:
                binders.setdefault(n, []).append(s)
        defined = set(binders).union(*(s.global_binds for s in kept)) if kept else set()
        star = any(
            isinstance(s.node, ast.ImportFrom) and any(a.name == "*" for a in s.node.names) for s in kept
        )

        # What Model reaches: its own names, then those of the kept statements that bind them.
        reached: dict[str, None] = {}
        seen = {id(model)}
        todo = [model]
        while todo:
            stmt = todo.pop()
            for n in sorted(stmt.now_refs | stmt.later_refs):
                reached.setdefault(n)
                for binder in binders.get(n, []):
                    if id(binder) not in seen:
                        seen.add(id(binder))
                        todo.append(binder)
        missing_model = [n for n in reached if n not in defined and n not in _BUILTINS]

        # What runs when the module loads: must be defined above its use.
        missing_load: list[str] = []
        order: dict[str, tuple[list[_Stmt], list[_Stmt]]] = {}
        so_far: set[str] = set()
        for s in kept:
            for n in sorted(s.now_refs):
                if n in so_far or n in _BUILTINS:
                    continue
                if n in binders:
                    used, defs = order.setdefault(n, ([], binders[n]))
                    used.append(s)
                elif n not in defined and n not in missing_load:
                    missing_load.append(n)
            so_far |= s.binds

        missing = sorted(set(missing_model) | set(missing_load))
        if star:
            if missing:
                return [
                    "Names could not be checked because of `from ... import *`; "
                    f"these must come from it: {', '.join(missing)}"
                ]
            return []
        if missing:
            subject = (
                "Model uses names that the saved code never defines"
                if set(missing) <= set(missing_model)
                else "The saved module uses names that it never defines"
            )
            parts = [f"{n} ({self._explain(n)})" for n in missing]
            details: dict[str, Any] = {"names": {n: sorted({d.cell for d in self.drops.get(n, [])}) for n in missing}}
            if not self.notebook:
                details["lines"] = {n: sorted({d.line for d in self.drops.get(n, [])}) for n in missing}
            raise ContractError(f"{subject}: {', '.join(parts)}", **details)
        if order:
            parts = []
            for n in sorted(order):
                used, defs = order[n]
                if {id(u) for u in used} <= {id(d) for d in defs}:
                    parts.append(f"{n} (used in {self._places(used)} while it is being defined)")
                else:
                    parts.append(f"{n} (used in {self._places(used)}, defined in {self._places(defs)})")
            raise ContractError(
                "The saved module uses names before they are defined (it runs top to bottom, like "
                f"Restart & Run All): {', '.join(parts)}; move the definitions above their use",
                order={
                    n: {"used": sorted({s.cell for s in used}), "defined": sorted({s.cell for s in defs})}
                    for n, (used, defs) in order.items()
                },
            )
        return []

    def _places(self, stmts: list[_Stmt]) -> str:
        if self.notebook:
            return _plural("cell", sorted({s.cell for s in stmts}))
        return _plural("line", sorted({s.start for s in stmts}))

    def _category_text(self, d: _Drop) -> str:
        if d.category == "skip":
            return f"tagged {SKIP_TAG}"
        if d.category == "magic":
            return f"dropped with its %%{d.magic} cell magic"
        if d.category == "shell":
            return "assigned from a shell command or magic, which the module cannot run"
        return "dropped as exploratory code"

    def _explain(self, name: str) -> str:
        drops = self.drops.get(name, [])
        if not drops:
            if name in _IPYTHON_NAMES:
                return "an IPython name that does not exist outside Jupyter"
            return "not defined in the notebook" if self.notebook else f"not defined in {self.name}"
        groups: dict[str, list[int]] = {}
        for d in drops:
            at = groups.setdefault(self._category_text(d), [])
            loc = d.cell if self.notebook else d.line
            if loc not in at:
                at.append(loc)
        unit = "cell" if self.notebook else "line"
        phrases = [f"{_plural(unit, locs)}, {text}" for text, locs in groups.items()]
        hint = (
            f"move it into a method, make it a constant, or tag the cell {INCLUDE_TAG}"
            if self.notebook
            else "move it into a method or make it a constant"
        )
        return f"assigned {'in' if self.notebook else 'on'} {'; '.join(phrases)} — {hint}"


def _plural(unit: str, items: list[int]) -> str:
    return f"{unit}{'s' if len(items) > 1 else ''} {', '.join(str(i) for i in items)}"
