"""Tool lists that change live, across processes: a change made over REST in one process
reaches the MCP sessions of the callers it concerns in another, and no one else."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, StdioServerParameters
from mcp.shared.subscriptions import ToolsListChanged
from mcp.types import ToolListChangedNotification

from core.config import Settings
from core.registry.changes import ToolsChange
from core.uow import Database
from servers.mcp import build_server
from servers.mcp_changes import ToolListChanges
from tests.cli.live import LiveServer
from tests.conftest import Account, join_org, make_org, signup

ROOT = Path(__file__).resolve().parents[2]


class Heard:
    """A client's message handler that queues each tools/list_changed notification."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[float] = asyncio.Queue()

    async def __call__(self, message: Any) -> None:
        if isinstance(message, ToolListChangedNotification) or (
            getattr(message, "root", None) is not None
            and isinstance(message.root, ToolListChangedNotification)
        ):
            self.queue.put_nowait(time.monotonic())

    async def next(self, timeout: float = 5.0) -> float:
        return await asyncio.wait_for(self.queue.get(), timeout)


class Delivered:
    """Wraps a feed's delivery so a test knows when a notice was handled (and can then assert
    that some session heard nothing, without sleeping)."""

    def __init__(self, feed: ToolListChanges, *people: Account, orgs: tuple[str, ...] = ()) -> None:
        self.queue: asyncio.Queue[tuple[ToolsChange, int]] = asyncio.Queue()
        original = feed.deliver
        # Other tests' events may still be relayed meanwhile: only changes naming ours count.
        persons = {uuid.UUID(p.id) for p in people}
        org_ids = {uuid.UUID(o) for o in orgs}

        async def deliver(change: ToolsChange) -> int:
            sent = await original(change)
            if change.persons & persons or change.orgs & org_ids:
                self.queue.put_nowait((change, sent))
            return sent

        feed.deliver = deliver  # type: ignore[method-assign]

    async def next(self, timeout: float = 5.0) -> int:
        """How many sessions and streams the next handled notice was sent to."""
        return (await asyncio.wait_for(self.queue.get(), timeout))[1]


@asynccontextmanager
async def feed_running(db: Database) -> AsyncIterator[ToolListChanges]:
    feed = ToolListChanges(db)
    stop = asyncio.Event()
    task = await feed.started(stop)
    assert feed.listening.is_set()
    try:
        yield feed
    finally:
        stop.set()
        await task


def stdio_params(settings: Settings, token: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "servers.cli", "mcp"],
        cwd=str(ROOT),
        env={
            "ATLILITH_TOKEN": token,
            "DATABASE_URL": settings.database_url or "",
            "ATLILITH_JWT_SECRET": settings.jwt_secret or "",
            "ATLILITH_DATA_DIR": str(settings.data_dir),
            "ATLILITH_LOG_LEVEL": "warning",
            # The live server's relay delivers; this one only listens.
            "ATLILITH_RELAY_ENABLED": "false",
            "PYTHONPATH": str(ROOT),
        },
    )


def tool_names(result: Any) -> set[str]:
    return {t.name for t in result.tools}


async def test_a_stdio_session_hears_a_rest_install_made_by_another_process(
    live: LiveServer, db: Database
) -> None:
    async with httpx.AsyncClient(base_url=live.url, timeout=30) as http, feed_running(db) as feed:
        a, b, c = await signup(http), await signup(http), await signup(http)
        org = await make_org(http, a)
        org_id = (await http.get(f"/v1/orgs/{org}", headers=a.h())).json()["id"]
        delivered = Delivered(feed, a, b, c, orgs=(org_id,))
        await join_org(http, org, a, c)
        # Heard here too (no session yet): from now on each notice is one of the steps below.
        assert await delivered.next() == 0
        # b and c: sessions in this process (the feed of this process serves them); a: stdio.
        server_b, server_c = build_server(db, static_token=b.token), build_server(db, static_token=c.token)
        feed.attach(server_b)
        feed.attach(server_c)
        heard_a, heard_b, heard_c = Heard(), Heard(), Heard()
        async with (
            Client(stdio_params(db.settings, a.token), mode="legacy", message_handler=heard_a) as session_a,
            Client(server_b, mode="legacy", message_handler=heard_b) as session_b,
            Client(server_c, mode="legacy", message_handler=heard_c) as session_c,
        ):
            for session in (session_a, session_b, session_c):
                tools = session.server_capabilities.tools
                assert tools is not None and tools.list_changed is True
            assert feed.session_count == 2
            assert "bookings_services_list" not in tool_names(await session_a.list_tools())

            # An install over REST, in the live server's process: a's stdio session hears it.
            r = await http.post("/v1/installations", json={"component": "bookings"}, headers=a.h())
            assert r.status_code == 201, r.text
            installed = time.monotonic()
            latency = await heard_a.next() - installed
            print(f"stdio session heard a REST install of another process in {latency * 1000:.0f} ms")
            assert latency < 1.0
            assert "bookings_services_list" in tool_names(await session_a.list_tools())
            # This process handled the same notice: b and c, not concerned, heard nothing.
            assert await delivered.next() == 0  # this process serves only b and c
            assert heard_b.queue.empty() and heard_c.queue.empty()

            # An install in the org: its members hear it (c, and a), b does not.
            r = await http.post("/v1/installations", json={"component": "messaging"}, headers=a.h(org))
            assert r.status_code == 201, r.text
            await heard_c.next()
            await heard_a.next()
            assert await delivered.next() == 1  # c, here; a hears it from its own process
            assert heard_b.queue.empty()
            assert "messaging_threads_list" in tool_names(await session_c.list_tools())

            # c removed from the org: c's session hears it, and the org's tools are gone from c's list.
            r = await http.delete(f"/v1/orgs/{org}/members/{c.slug}", headers=a.h(org))
            assert r.status_code == 204, r.text
            await heard_c.next()
            assert await delivered.next() == 1  # c only
            assert heard_b.queue.empty()
            assert "messaging_threads_list" not in tool_names(await session_c.list_tools())
            assert "bookings_services_list" not in tool_names(await session_b.list_tools())
        # A closed session is forgotten.
        assert feed.session_count == 0


async def test_a_listen_stream_hears_only_changes_of_its_caller(
    client: httpx.AsyncClient, db: Database
) -> None:
    """2026-07-28 clients: subscriptions/listen streams, filtered per caller by the server's bus."""
    from core.relay import Relay

    a, b = await signup(client), await signup(client)
    async with feed_running(db) as feed:
        delivered = Delivered(feed, a, b)
        server_a, server_b = build_server(db, static_token=a.token), build_server(db, static_token=b.token)
        feed.attach(server_a)
        feed.attach(server_b)
        async with (
            Client(server_a) as ca,
            ca.listen(tools_list_changed=True) as changes_a,
            Client(server_b) as cb,
            cb.listen(tools_list_changed=True) as changes_b,
        ):
            tools = ca.server_capabilities.tools
            assert tools is not None and tools.list_changed is True
            heard_a, heard_b = aiter(changes_a), aiter(changes_b)
            assert not (await ca.call_tool("registry_install", {"component": "bookings"})).is_error
            await Relay(db).drain()
            assert isinstance(await asyncio.wait_for(anext(heard_a), 5), ToolsListChanged)
            assert await delivered.next() == 1  # a's stream only, of the two
            # b's stream got nothing for a's change: its next event is b's own.
            r = await client.post("/v1/installations", json={"component": "bookings"}, headers=b.h())
            assert r.status_code == 201, r.text
            await Relay(db).drain()
            assert isinstance(await asyncio.wait_for(anext(heard_b), 5), ToolsListChanged)
            assert "bookings_services_list" in tool_names(await cb.list_tools())


@pytest.mark.parametrize("sessions", ["stateful", "stateless"])
async def test_handshake_clients_over_http_hear_changes_when_sessions_are_stateful(
    db: Database, client: httpx.AsyncClient, sessions: str
) -> None:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client

    from core.relay import Relay
    from servers.app import create_app
    from tests.support.serving import free_port, serving

    a = await signup(client)
    port = free_port()
    settings = db.settings.model_copy(update={"port": port, "mcp_http_sessions": sessions})
    own_db = Database(settings)  # the MCP door reads its settings from the database's
    app = create_app(settings, db=own_db, run_relay=False)
    try:
        async with serving(app, port, lifespan="on"):
            feed: ToolListChanges = app.state.tool_changes
            delivered = Delivered(feed, a)
            heard = Heard()
            # The client opens its notification stream (GET) in the background after the
            # handshake; a change delivered before the server has it open reaches nobody.
            stream_open = asyncio.Event()

            async def opened(response: httpx2.Response) -> None:
                if response.request.method == "GET" and response.status_code == 200:
                    stream_open.set()

            http = httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {a.token}"}, event_hooks={"response": [opened]}
            )
            url = f"http://127.0.0.1:{port}/mcp"
            async with Client(
                streamable_http_client(url, http_client=http), mode="legacy", message_handler=heard
            ) as c:
                tools = c.server_capabilities.tools
                assert tools is not None and tools.list_changed is (sessions == "stateful")
                assert feed.session_count == (1 if sessions == "stateful" else 0)
                if sessions == "stateful":
                    await asyncio.wait_for(stream_open.wait(), 5)
                r = await client.post("/v1/installations", json={"component": "bookings"}, headers=a.h())
                assert r.status_code == 201, r.text
                await Relay(db).drain()
                if sessions == "stateful":
                    await heard.next()
                else:
                    await delivered.next()
                    assert heard.queue.empty()
                assert "bookings_services_list" in tool_names(await c.list_tools())
    finally:
        await own_db.dispose()
