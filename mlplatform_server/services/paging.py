"""Offset pagination shared by every list endpoint."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from ..errors import InvalidInput

DEFAULT_LIMIT = 50
MAX_LIMIT = 500


@dataclass(frozen=True)
class Page:
    items: list[dict[str, Any]]
    total: int
    limit: int
    offset: int

    def to_json(self) -> dict[str, Any]:
        return {"items": self.items, "total": self.total, "limit": self.limit, "offset": self.offset}


def check_fields(body: dict[str, Any], allowed: set[str]) -> None:
    """Refuse a request body with fields the endpoint does not know (typos lose nothing silently)."""
    unknown = sorted(set(body) - allowed)
    if unknown:
        raise InvalidInput(f"Unknown field(s) {', '.join(unknown)}; expected some of {', '.join(sorted(allowed))}")


def check_window(limit: int | None, offset: int) -> tuple[int, int]:
    limit = DEFAULT_LIMIT if limit is None else limit
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput(f"'limit' must be between 1 and {MAX_LIMIT}, got {limit}")
    if offset < 0:
        raise InvalidInput(f"'offset' must be 0 or more, got {offset}")
    return limit, offset


def paginate(
    session: Session, query: Select, limit: int | None, offset: int, to_json: Callable[[Any], dict[str, Any]]
) -> Page:
    limit, offset = check_window(limit, offset)
    total = session.execute(select(func.count()).select_from(query.order_by(None).subquery())).scalar_one()
    rows = session.execute(query.limit(limit).offset(offset)).scalars().all()
    return Page([to_json(row) for row in rows], total, limit, offset)
