"""Apps for tests to talk to: in process (`app_client`), or on a real socket of 127.0.0.1 (a
free port, the whole app served in the test's event loop, and a base for the small fake servers
— peers, Inngest's event API — that tests run)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal

import httpx
import uvicorn
from starlette.types import ASGIApp

from benchmarks.common import InLoopServer, free_port
from core.config import Settings
from core.uow import Database
from tests.conftest import running

__all__ = ["LocalServer", "app_client", "free_port", "serving"]


@asynccontextmanager
async def app_client(
    database: Database, *, settings: Settings | None = None, base_url: str = "http://testserver"
) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the whole app on `database` (with `settings`, default the database's), its
    lifespan run and no relay, called in process: no socket, no port."""
    from servers.app import create_app

    application = create_app(settings or database.settings, db=database, run_relay=False)
    async with running(application):
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=base_url) as c:
            yield c


@asynccontextmanager
async def serving(
    app: ASGIApp, port: int, *, lifespan: Literal["auto", "on", "off"] = "auto", **config: Any
) -> AsyncIterator[str]:
    """`app` served on 127.0.0.1:`port` by uvicorn in this event loop; yields its base URL and
    stops it on the way out."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan=lifespan, **config)
    )
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            # A server that failed to start ends its task; waiting on would hang the test.
            assert not task.done(), "the server did not start"
            await asyncio.sleep(0.02)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# The fake servers' base and the free port are the benchmarks' (their resilience scenarios run
# the same fakes, and benchmarks ship without the tests).
LocalServer = InLoopServer
