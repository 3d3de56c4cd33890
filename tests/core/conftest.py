"""Fixtures of the core tests that count what one test's requests do."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from core.uow import Database
from tests.support.request_path import own_database
from tests.support.serving import app_client


@pytest.fixture
async def own_db(db: Database) -> AsyncIterator[Database]:
    """A database object of this test alone, stateless MCP: its pools and session makers count
    only this test's."""
    async with own_database(db) as database:
        yield database


@pytest.fixture
async def own_client(own_db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with app_client(own_db, base_url="http://localhost:8000") as c:
        yield c
