"""Where a user's objects live on Kubernetes: one configured namespace, or one per user.

In per-user mode a user's runs, deployments, schedules, credentials Secret and build Jobs live in
``<prefix><user>``, the user name sanitized by :func:`.names.sanitize_name` (a DNS-1123 label of at
most 63 characters; a name that had to change gets a hash of the original appended, so "Alice" and
"alice" never share a namespace). An admin creates these namespaces (the platform has no right to
create namespaces): see README "One namespace per user".

Backend references: in the fixed-namespace mode a reference is the object's name (as it always
was); in per-user mode it is ``<namespace>/<name>``. Kubernetes names never contain ``/``, so a
reference names its namespace exactly when it contains one.
"""

from __future__ import annotations

import re

from .names import HASH_LEN, sanitize_name

DEFAULT_PREFIX = "mlp-u-"
PREFIX_MAX = 40  # leaves at least 23 characters of a 63-character namespace for the user
_PREFIX_RE = re.compile(r"[a-z]([-a-z0-9]*)?")


def validate_prefix(prefix: str) -> str:
    """The prefix itself, or ValueError saying what a prefix must look like."""
    if not _PREFIX_RE.fullmatch(prefix or "") or len(prefix) > PREFIX_MAX:
        raise ValueError(f"namespace prefix {prefix!r} is not valid: expected a lowercase letter, then lowercase "
                         f"letters, digits or '-', at most {PREFIX_MAX} characters (e.g. {DEFAULT_PREFIX!r})")
    return prefix


def user_namespace(prefix: str, user: str) -> str:
    """The namespace of ``user``: ``prefix`` + the sanitized user name, at most 63 characters."""
    if not user:
        raise ValueError("a user name is needed to choose its namespace")
    room = 63 - len(validate_prefix(prefix))
    assert room > HASH_LEN + 1
    return prefix + sanitize_name(user, room)


def join_ref(namespace: str | None, name: str) -> str:
    """A backend reference: ``namespace/name``, or the bare name when ``namespace`` is None."""
    return f"{namespace}/{name}" if namespace else name


def split_ref(ref: str) -> tuple[str | None, str]:
    """(namespace, name) of a reference; the namespace is None for a bare name."""
    namespace, sep, name = ref.partition("/")
    return (namespace, name) if sep else (None, ref)
