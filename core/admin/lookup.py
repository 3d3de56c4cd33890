"""How an admin names a person or searches: by handle or id, with a LIKE pattern."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from core.errors import NotFound
from core.scoping import one_or
from core.tenancy.models import Person
from core.uow import UnitOfWork


def like(q: str) -> str:
    """A substring pattern for ILIKE, the wildcards typed in `q` matched literally."""
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def as_uuid(ref: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(ref.strip())
    except ValueError:
        return None


async def find_person(uow: UnitOfWork, ref: str, *, lock: bool = False) -> Person:
    """A person by id or handle."""
    pid = as_uuid(ref)
    stmt = select(Person).where(Person.id == pid if pid else Person.slug == ref.strip().lower())
    not_found = NotFound(
        f"no person {ref!r}",
        code="person_not_found",
        hint="pass a handle or a person id; search with [[admin.list_persons]]",
    )
    return await one_or(uow, stmt.with_for_update() if lock else stmt, not_found)
