"""Relative paths under a run's artifacts: one check for the API, the CLI and the TensorBoard sync.

Only standard library: the CLI and the Jupyter extension import it.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import quote

from .errors import InvalidInput


def clean_relative(path: str, what: str = "path") -> str:
    """``path`` as a normalised relative POSIX path inside the artifacts folder; InvalidInput otherwise."""
    if not isinstance(path, str) or not path.strip("/"):
        raise InvalidInput(f"'{what}' must name a file under the run's artifacts")
    if "\x00" in path or "\\" in path:
        raise InvalidInput(f"'{what}' {path!r} may not contain NUL or backslash characters")
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        raise InvalidInput(f"'{what}' {path!r} is absolute: give a path relative to the run's artifacts")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InvalidInput(f"'{what}' {path!r} names no file under the run's artifacts")
    if ".." in parts:
        raise InvalidInput(f"'{what}' {path!r} leaves the run's artifacts ('..' is not allowed)")
    return "/".join(parts)


def artifact_url_path(path: str) -> str:
    """``path`` quoted segment by segment; dot segments encoded, so the server (not URL
    normalisation on the way) judges a path that tries to leave the run's artifacts."""
    return "/".join({".": "%2E", "..": "%2E%2E"}.get(seg, quote(seg, safe="")) for seg in path.split("/"))
