"""A client of an app that reports each request's SQL statement count (`x-db-statements`, sent
when `expose_db_stats` is on): for tests that pin what an operation costs in statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from core.uow import Database
from tests.support.serving import app_client


@asynccontextmanager
async def counting_client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(db, settings=db.settings.model_copy(update={"expose_db_stats": True})) as c:
        yield c


def statements(response: httpx.Response) -> int:
    return int(response.headers["x-db-statements"])
