"""Tool lists that change live, across processes.

Every core operation that changes what a caller may see emits `registry/tools.changed`; its
handler NOTIFYs `core.registry.changes.CHANNEL` (`core.registry.handlers`). Here, one LISTEN
connection per process turns each notice into `notifications/tools/list_changed` for the live
sessions whose caller it concerns (`core.registry.changes.affected`):

- handshake-era (2025-11-25 and before) connections with a standalone channel — stdio, and
  stateful streamable HTTP sessions (their GET stream) — get the notification;
- 2026-07-28 clients get it on their `subscriptions/listen` streams, through `CallerBus`, the
  SDK's `SubscriptionBus` seam, filtered per caller the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import asyncpg
from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.middleware.bearer_auth import AuthenticatedUser
from mcp.server.connection import Connection
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.subscriptions import ServerEvent, ToolsListChanged

from core.db import asyncpg_dsn
from core.errors import DomainError
from core.observability import get_logger
from core.opener import open_context
from core.registry.changes import CHANNEL, Caller, ToolsChange, affected
from core.uow import Database, app_database_url

if TYPE_CHECKING:
    from servers.mcp import AtlilithServer

__all__ = ["CallerBus", "ToolListChanges"]

log = get_logger("atlilith.mcp.changes")

Listener = Callable[[ServerEvent], None]


def current_credential(static_token: str | None) -> str | None:
    """The credential of the request being served: stdio's own, else the bearer token."""
    if static_token:
        return static_token
    access = get_access_token()
    return access.token if access is not None else None


class CallerBus:
    """The server's `SubscriptionBus`: like the SDK's in-memory bus, but each listen stream
    remembers the credential that opened it, so a change reaches only the streams of the
    callers it concerns. `publish` (the SDK's own `ctx.notify_*`) still reaches every stream."""

    def __init__(self, static_token: str | None) -> None:
        self._static_token = static_token
        self._listeners: dict[object, tuple[Listener, str | None]] = {}

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        # Called by the SDK's listen handler while it serves the request: its credential is ours.
        token = object()
        self._listeners[token] = (listener, current_credential(self._static_token))

        def unsubscribe() -> None:
            self._listeners.pop(token, None)

        return unsubscribe

    async def publish(self, event: ServerEvent) -> None:
        self.deliver(event, lambda _credential: True)
        await asyncio.sleep(0)

    def credentials(self) -> set[str]:
        return {c for _, c in self._listeners.values() if c is not None}

    def deliver(self, event: ServerEvent, wanted: Callable[[str | None], bool]) -> int:
        """Hand `event` to each stream whose credential is `wanted`; returns how many."""
        sent = 0
        for listener, credential in list(self._listeners.values()):
            if not wanted(credential):
                continue
            try:
                listener(event)
                sent += 1
            except Exception:  # one broken stream must not starve the others
                log.exception("listen_stream_delivery_failed")
        return sent


@dataclass
class _Session:
    connection: Connection
    credential: str


class ToolListChanges:
    """One per process: tracks the live MCP sessions of the servers attached to it and, on each
    notice, tells those whose caller is affected. `run` holds the LISTEN connection."""

    def __init__(self, db: Database, *, reconnect_seconds: float = 1.0) -> None:
        self.db = db
        self.reconnect_seconds = reconnect_seconds
        self.listening = asyncio.Event()
        # Set once a connection attempt has failed: a start with the database out need not wait.
        self._refused = asyncio.Event()
        self._buses: list[CallerBus] = []
        self._sessions: dict[int, _Session] = {}
        self._callers: dict[str, Caller | None] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def attach(self, server: AtlilithServer) -> None:
        """Track `server`'s handshake-era sessions (from their `initialize`) and its listen
        streams (its `CallerBus`)."""
        self._buses.append(server.change_bus)
        static_token = server.static_token

        async def track(ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
            result = await call_next(ctx)
            # At the handshake's request, not its `initialized` notice: the client waits for
            # this answer, so the session is known before it can ask for anything else.
            if ctx.method == "initialize":
                await self._register(ctx, static_token)
            return result

        server.middleware.append(track)

    async def _register(self, ctx: ServerRequestContext[Any, Any], static_token: str | None) -> None:
        # The SDK hands middleware no public handle on the connection yet (its `Context`, for
        # tools, has one); without it there is nothing to push on or to clean up with.
        connection = getattr(ctx.session, "_connection", None)
        # Stateless HTTP has no channel to push on: nothing to track.
        if not isinstance(connection, Connection) or not connection.has_standalone_channel:
            return
        credential = static_token
        if credential is None and ctx.request is not None:
            user = getattr(ctx.request, "scope", {}).get("user")
            credential = user.access_token.token if isinstance(user, AuthenticatedUser) else None
        credential = credential or current_credential(None)
        if credential is None:
            return
        await self._caller(credential)  # resolved while the credential is surely valid
        key = id(connection)
        self._sessions[key] = _Session(connection, credential)
        connection.exit_stack.callback(self._sessions.pop, key, None)

    async def _caller(self, credential: str) -> Caller | None:
        if credential not in self._callers:
            try:
                async with self.db.uow() as uow:
                    ctx = await open_context(
                        uow, credential, person_level=True, resource=self.db.settings.mcp_resource_url
                    )
                principal = ctx.principal
                bound = principal.org_id if principal.org_bound else None
                self._callers[credential] = Caller(ctx.person_id, bound)
            except DomainError as err:
                log.info("tools_changed_caller_refused", code=err.code)
                self._callers[credential] = None
        return self._callers[credential]

    async def started(self, stop: asyncio.Event, *, wait_seconds: float = 5.0) -> asyncio.Task[None]:
        """Start `run` and wait (a bounded while) until it listens, so that a session opened
        from now on hears every later change."""
        task = asyncio.create_task(self.run(stop), name="atlilith-tool-changes")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(_first(self.listening.wait(), self._refused.wait()), wait_seconds)
        return task

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    # --- hearing the notices ---------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """LISTEN until `stop`, reconnecting when the connection drops. After a reconnect every
        session is told once: a change may have been missed meanwhile."""
        dsn = asyncpg_dsn(app_database_url(self.db.settings))
        connected_before = False
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            lost = asyncio.Event()
            try:
                # Bounded: while the database is away, `stop` must not wait on a minute-long connect.
                conn = await asyncpg.connect(dsn, timeout=self.reconnect_seconds * 5)
                conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                await conn.add_listener(CHANNEL, self._on_notice)
                self.listening.set()
                if connected_before:
                    missed = ToolsChange("reconnect", frozenset(), frozenset(), everyone=True)
                    self._spawn(self.deliver(missed))
                connected_before = True
                await _first(stop.wait(), lost.wait())
                if lost.is_set():
                    log.warning("tools_changed_listen_lost")
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("tools_changed_listen_failed", error=type(exc).__name__)
                self._refused.set()
            finally:
                self.listening.clear()
                if conn is not None and not conn.is_closed():
                    with contextlib.suppress(Exception):
                        await conn.close(timeout=2)
            if not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.reconnect_seconds)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _on_notice(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        change = ToolsChange.from_notice(payload)
        if change is not None:
            self._spawn(self.deliver(change))

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def deliver(self, change: ToolsChange) -> int:
        """Tell every session and listen stream of an affected caller; returns how many."""
        sessions = list(self._sessions.values())
        credentials = {s.credential for s in sessions}.union(*(b.credentials() for b in self._buses))
        if not credentials:
            return 0
        try:
            callers = {c: await self._caller(c) for c in credentials}
            known = {caller for caller in callers.values() if caller is not None}
            async with self.db.system() as uow:
                hit = await affected(uow, change, known)
        except Exception:
            log.exception("tools_changed_delivery_failed", event_id=change.event_id)
            return 0
        # Credentials no session uses any more need not stay resolved.
        for stale in set(self._callers) - credentials:
            self._callers.pop(stale, None)

        def wanted(credential: str | None) -> bool:
            return credential is not None and callers.get(credential) in hit

        sent = 0
        for session in sessions:
            if wanted(session.credential):
                await session.connection.send_tool_list_changed()
                sent += 1
        for bus in self._buses:
            sent += bus.deliver(ToolsListChanged(), wanted)
        log.info("tools_changed_delivered", event_id=change.event_id, sessions=sent)
        return sent


async def _first(*waits: Any) -> None:
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
