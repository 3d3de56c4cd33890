"""What the request-path tests share: a database object of one test alone (its pools and
session makers count only that test's), served with stateless MCP as the bench server runs it,
and a count of the ORM sessions its units of work make."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from core.uow import Database

# One POST per MCP call, answered as JSON or an event stream.
MCP_POST_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@asynccontextmanager
async def own_database(db: Database, **overrides: Any) -> AsyncIterator[Database]:
    """A `Database` on the test database's settings with stateless MCP (and `overrides`)."""
    database = Database(db.settings.model_copy(update={"mcp_http_sessions": "stateless", **overrides}))
    try:
        yield database
    finally:
        await database.dispose()


def count_sessions(database: Database, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """`[n]`: how many ORM sessions `database`'s units of work make from here on."""
    made = [0]
    for name in ("sessionmaker", "system_sessionmaker"):
        maker = getattr(database, name)

        def counting(*args: Any, _maker: Any = maker, **kwargs: Any) -> Any:
            made[0] += 1
            return _maker(*args, **kwargs)

        monkeypatch.setattr(database, name, counting)
    return made
