"""Reading a notebook into code cells, and removing IPython-only syntax (magics, shell escapes, help lines).

Only the standard library and `mlplatform_server.errors` may be imported here (see the package docstring).
"""

from __future__ import annotations

import json
import re

from ..errors import ContractError

SKIP_TAG = "mlp-skip"
INCLUDE_TAG = "mlp-include"

#: Cell magics whose body is Python: an `mlp-include` tag keeps such a cell (without the magic line).
PYTHON_CELL_MAGICS = frozenset({"time", "timeit", "capture", "prun"})

# `x = !ls`, `a, b = %sx cmd`: an assignment whose value is a shell escape or a line magic.
_MAGIC_ASSIGN = re.compile(r"^([\w.,\s\[\]()*]+?)=\s*[!%]")
# `obj?`, `obj.attr??`, `?obj`, `??np.*mean*`
_HELP_LINE = re.compile(r"^(\?{1,2}[\w.*\[\]]+|[\w.*\[\]()]+\?{1,2})$")
# Characters that can never start a Python statement but start an IPython escape.
_ESCAPES = ("%", "!", "/", ",", ";")


def _notebook_cells(source: str, name: str) -> list[tuple[int, str, frozenset[str]]]:
    """(1-based index among all cells, source, tags) of each code cell."""
    try:
        nb = json.loads(source)
    except ValueError as exc:
        raise ContractError(f"{name} is not a valid notebook (not JSON: {exc})") from None
    if not isinstance(nb, dict):
        raise ContractError(f"{name} is not a valid notebook (expected a JSON object)")
    cells = nb.get("cells")
    if cells is None and isinstance(nb.get("worksheets"), list):  # nbformat 3
        cells = [c for ws in nb["worksheets"] if isinstance(ws, dict) for c in ws.get("cells") or []]
    if not isinstance(cells, list):
        raise ContractError(f"{name} is not a valid notebook (no list of cells)")
    out = []
    for position, cell in enumerate(cells, start=1):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        text = cell.get("source", cell.get("input", ""))
        if isinstance(text, list):
            text = "".join(str(part) for part in text)
        if not isinstance(text, str):
            raise ContractError(f"{name} is not a valid notebook (cell {position} has no source text)", cell=position)
        metadata = cell.get("metadata")
        tags = metadata.get("tags") if isinstance(metadata, dict) else None
        tag_set = frozenset(t.strip().lower() for t in tags if isinstance(t, str)) if isinstance(tags, list) else frozenset()
        out.append((position, text, tag_set))
    return out


def _normalize(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _cell_magic(text: str) -> str | None:
    """The name of the cell magic a cell starts with (`%%time` → "time"), if any."""
    for line in text.split("\n"):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("%%"):
            return stripped[2:].split(None, 1)[0] if len(stripped) > 2 else ""
        return None
    return None


def _without_cell_magic_line(text: str) -> str:
    """The cell with its leading `%%magic` line blanked (line numbers unchanged)."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if line.strip():
            lines[i] = ""
            break
    return "\n".join(lines)


def _is_magic_line(stripped: str) -> bool:
    return stripped.startswith(_ESCAPES) or bool(_MAGIC_ASSIGN.match(stripped)) or bool(_HELP_LINE.match(stripped))


def _strip_magics(text: str) -> tuple[str, int, list[tuple[int, list[str]]]]:
    """Remove IPython-only lines.

    Returns the new text (same number of lines), how many lines were removed, and for each
    `x = !cmd` line (line number, names it assigned).
    """
    lines = text.split("\n")
    out: list[str] = []
    removed = 0
    assigned: list[tuple[int, list[str]]] = []
    quote: str | None = None  # delimiter of the string literal open at the end of the previous line
    depth = 0  # open brackets
    cont = False  # previous line ended with a backslash continuation
    magic_cont = False  # previous line was a magic ending with a backslash
    for lineno, line in enumerate(lines, start=1):
        if magic_cont:
            out.append("")
            removed += 1
            magic_cont = line.rstrip().endswith("\\")
            continue
        stripped = line.strip()
        if quote is None and depth == 0 and not cont and stripped and _is_magic_line(stripped):
            indent = line[: len(line) - len(line.lstrip())]
            out.append(indent + "pass" if indent else "")
            removed += 1
            magic_cont = stripped.endswith("\\")
            match = _MAGIC_ASSIGN.match(stripped)
            if match:
                assigned.append((lineno, re.findall(r"[A-Za-z_]\w*", match.group(1))))
            continue
        out.append(line)
        quote, depth, cont = _scan_line(line, quote, depth)
    return "\n".join(out), removed, assigned


def _scan_line(line: str, quote: str | None, depth: int) -> tuple[str | None, int, bool]:
    """Track string literals, brackets and continuations across one physical line."""
    i, n = 0, len(line)
    comment = False
    while i < n:
        ch = line[i]
        if quote is not None:
            if ch == "\\":
                i += 2
                continue
            if line.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
            i += 1
            continue
        if ch == "#":
            comment = True
            break
        if ch in "\"'":
            quote = ch * 3 if line.startswith(ch * 3, i) else ch
            i += len(quote)
            continue
        if ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth = max(0, depth - 1)
        i += 1
    if quote is not None and len(quote) == 1 and not line.endswith("\\"):
        quote = None  # unterminated one-line string: the parser will report it
    cont = quote is None and not comment and line.endswith("\\")
    return quote, depth, cont
