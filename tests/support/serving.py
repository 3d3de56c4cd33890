"""Apps for tests to talk to: in process (`app_client`), or on a real socket of 127.0.0.1 (a
free port, the whole app served in the test's event loop, and a base for the small fake servers
— peers, Inngest's event API — that tests run)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Literal, Self

import httpx
import uvicorn
from starlette.types import ASGIApp

from core.config import Settings
from core.uow import Database
from tests.conftest import running


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


class LocalServer:
    """A fake server on 127.0.0.1:<free port>, run as `async with` in the test's event loop.
    Subclasses build their Starlette app and hand it to `listen`."""

    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]

    def listen(self, app: ASGIApp) -> None:
        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        await self.task
