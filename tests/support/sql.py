"""Raw SQL for tests: reading or forcing what the database holds, past the services."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import Result, text

from core.uow import Database


async def system_sql(
    db: Database, statement: str, params: Mapping[str, Any] | None = None
) -> Result[*tuple[Any, ...]]:
    """`statement` run in system mode (no tenant: row-level security does not narrow it) in a
    transaction of its own, committed. The result is buffered, so it reads after the commit."""
    async with db.system() as uow:
        return await uow.session.execute(text(statement), dict(params or {}))
