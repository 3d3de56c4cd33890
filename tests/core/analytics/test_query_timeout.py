"""An analytics read runs under its statement timeout (`ATLILITH_ANALYTICS_QUERY_TIMEOUT_SECONDS`):
a statement over it is stopped and answered as `query_timeout`, and the limit is the
transaction's own, gone with it."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import text

from core.analytics._queries import fetch_rows, limit_time
from core.errors import Unavailable
from core.uow import Database
from tests.conftest import signup
from tests.core.analytics.support import caller


async def test_a_statement_past_the_analytics_timeout_is_stopped(
    db: Database, client: httpx.AsyncClient
) -> None:
    who = await signup(client)
    limited = Database(db.settings.model_copy(update={"analytics_query_timeout_seconds": 0.2}))
    try:
        async with caller(limited, who) as (_, uow):
            await limit_time(uow)
            assert (await fetch_rows(uow, "SELECT current_setting('statement_timeout') AS timeout"))[
                0
            ].timeout == "200ms"
            with pytest.raises(Unavailable) as stopped:
                await fetch_rows(uow, "SELECT pg_sleep(5)")
            assert stopped.value.code == "query_timeout"
        async with caller(limited, who) as (_, uow):
            # A new transaction on the same pool: the limit was local to the one before.
            rows = (
                await uow.session.execute(text("SELECT current_setting('statement_timeout') AS timeout"))
            ).all()
            assert rows[0].timeout != "200ms"
    finally:
        await limited.dispose()
