"""A client of an app that reports each request's SQL statement count (`x-db-statements`, sent
when `expose_db_stats` is on): for tests that pin what an operation costs in statements."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from core.uow import Database
from servers.app import create_app
from tests.conftest import running


@asynccontextmanager
async def counting_client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    settings = db.settings.model_copy(update={"expose_db_stats": True})
    application = create_app(settings, db=db, run_relay=False)
    async with running(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
            yield c


def statements(response: httpx.Response) -> int:
    return int(response.headers["x-db-statements"])
