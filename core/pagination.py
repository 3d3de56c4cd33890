"""Keyset pagination: `limit` (default 20, max 100) and an opaque cursor naming the last row."""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, Field

from core.errors import FieldIssue, ValidationFailed

T = TypeVar("T")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page.")


class PageRequest(BaseModel):
    limit: int = Field(default=DEFAULT_LIMIT, ge=1, le=MAX_LIMIT)
    cursor: str | None = Field(default=None, max_length=512)


def encode_cursor(*values: Any, tag: str | None = None) -> str:
    """The last row's values; `tag` names the list they order (`core.scoping.keyset_tag`), so
    another list's cursor is refused there instead of being read as a position."""

    def plain(v: Any) -> Any:
        if isinstance(v, dt.datetime):
            return {"t": v.isoformat()}
        if isinstance(v, uuid.UUID):
            return {"u": str(v)}
        return v

    named = [{"k": tag}] if tag else []
    raw = json.dumps(named + [plain(v) for v in values], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, arity: int, tag: str | None = None) -> list[Any]:
    def typed(v: Any) -> Any:
        if isinstance(v, dict) and "t" in v:
            return dt.datetime.fromisoformat(v["t"])
        if isinstance(v, dict) and "u" in v:
            return uuid.UUID(v["u"])
        return v

    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        values = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if not isinstance(values, list):
            raise ValueError("not a list")
        if tag is not None:
            if not values or values[0] != {"k": tag}:
                raise ValueError("another list's cursor")
            values = values[1:]
        if len(values) != arity:
            raise ValueError("wrong arity")
        return [typed(v) for v in values]
    except (ValueError, TypeError, KeyError) as exc:
        raise invalid_cursor() from exc


def invalid_cursor() -> ValidationFailed:
    """What a cursor this list did not produce (or produced under other filters, or in another
    context) answers."""
    return ValidationFailed(
        "the cursor is not valid for this list",
        code="invalid_cursor",
        hint="pass back `next_cursor` exactly as returned, with the same filters, in the same context",
        errors=[FieldIssue("cursor", "not a cursor this list produced")],
    )


def page_of(rows: list[T], limit: int, key: Any, tag: str | None = None) -> Page[T]:
    """`rows` was fetched with limit+1; `key(row)` gives the cursor values of a row."""
    more = len(rows) > limit
    items = rows[:limit]
    cursor = encode_cursor(*key(items[-1]), tag=tag) if more and items else None
    return Page[T](items=items, next_cursor=cursor)
