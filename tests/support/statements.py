"""A client of an app that reports each request's SQL statement count (`x-db-statements`, sent
when `expose_db_stats` is on): for tests that pin what an operation costs in statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import httpx
import pytest

from core.uow import Database
from tests.support.serving import app_client


@asynccontextmanager
async def counting_client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(db, settings=db.settings.model_copy(update={"expose_db_stats": True})) as c:
        yield c


def statements(response: httpx.Response) -> int:
    return int(response.headers["x-db-statements"])


def record_simple_queries(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every simple query asyncpg sends from here on (BEGIN, COMMIT, ROLLBACK and the literal
    statements of `begin_with` and `commit_with`), in order."""
    queries: list[str] = []
    original = asyncpg.Connection.execute

    async def execute(self: asyncpg.Connection, query: str, *args: Any, **kwargs: Any) -> Any:
        queries.append(query)
        return await original(self, query, *args, **kwargs)

    monkeypatch.setattr(asyncpg.Connection, "execute", execute)
    return queries
