"""Kubernetes names and label values from platform names (user names, run ids, model names).

A name is lowercased and every run of characters outside ``[-a-z0-9]`` becomes one ``-``. When
that changed the text (or it had to be cut to fit), an 8-hex-digit hash of the original text is
appended, so two platform names that differ only in case or punctuation ("Alice" and "alice",
"a_b" and "a.b") never map to the same Kubernetes object.
"""

from __future__ import annotations

import hashlib
import re

_NAME_BAD = re.compile(r"[^a-z0-9-]+")
_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")
HASH_LEN = 8


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LEN]


def sanitize_name(text: str, max_len: int = 63) -> str:
    """A DNS-1123 label (``[a-z0-9]([-a-z0-9]*[a-z0-9])?``, at most ``max_len`` characters)."""
    if max_len <= HASH_LEN + 1:
        raise ValueError(f"max_len must be more than {HASH_LEN + 1}")
    clean = _NAME_BAD.sub("-", text.lower()).strip("-")
    if clean == text and len(clean) <= max_len:
        return clean
    head = clean[: max_len - HASH_LEN - 1].rstrip("-")
    return f"{head}-{_hash(text)}" if head else _hash(text)


def sanitize_label_value(text: str, max_len: int = 63) -> str:
    """A label value: at most 63 of ``[A-Za-z0-9._-]``, starting and ending alphanumeric.
    Case is kept (label values may have it)."""
    clean = _LABEL_BAD.sub("-", text).strip("-._")
    if clean == text and len(clean) <= max_len:
        return clean
    head = clean[: max_len - HASH_LEN - 1].rstrip("-._")
    return f"{head}-{_hash(text)}" if head else _hash(text)
