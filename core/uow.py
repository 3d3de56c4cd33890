"""The unit of work: one transaction, the tenant settings row-level security reads, and the
events emitted inside it (written to the outbox in the same transaction)."""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from enum import StrEnum
from types import TracebackType
from typing import Any, Self, TypedDict, Unpack

from pydantic_core import to_jsonable_python
from sqlalchemy import CursorResult, Executable, insert, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from core.config import Settings
from core.context import TenantContext
from core.credentials import Passwords, Tokens
from core.db import (
    begin_with,
    commit_with,
    fetch_on_driver,
    make_engine,
    make_sessionmaker,
    session_backstops,
    with_role,
)
from core.db_errors import connection_lost, transaction_conflict, translate_db_error
from core.observability import current_trace_id, current_traceparent, get_logger, new_trace_id
from core.outbox import EVENT_COLUMNS, outbox_table, validate_event_name

log = get_logger("atlilith.uow")


class Mode(StrEnum):
    ANONYMOUS = "none"  # nothing tenant-owned is visible until resolve_context binds a person
    USER = "user"  # a person in a context; org visibility re-checked against membership
    SERVICE = "service"  # the platform acting for one tenant (handlers, jobs)
    SYSTEM = "system"  # the platform across tenants (relay, sign-up, sweeps)


# The first statement of every unit of work that acts for someone, and of every later
# transaction of one: executed on the driver's connection (`fetch`).
_SETTINGS_SQL = (
    "SELECT set_config('app.mode', $1, true), set_config('app.person_id', $2, true),"
    " set_config('app.org_id', $3, true), set_config('app.trace_id', $4, true)"
)
# The same settings with their values written in, which go with BEGIN in one round trip
# (`core.db.begin_with`) when they open a transaction: `SET LOCAL` is `set_config(..., true)`,
# and PostgreSQL plans no query for it (a literal SELECT would be parsed and planned every
# time). Only server-made values of a strict shape are written so (`_settings_literal`);
# anything else goes as parameters.
_SETTINGS_LITERAL = (
    "SET LOCAL app.mode = '{}';SET LOCAL app.person_id = '{}';"
    "SET LOCAL app.org_id = '{}';SET LOCAL app.trace_id = '{}'"
)
_TRACE_ID = re.compile(r"[0-9a-f]{32}")
# A person's context in a later transaction of the same unit of work: the ticket that
# `platform.resolve_context` signed lets `platform.bind_ticket` sign this transaction too.
_TICKET_SQL = "SELECT platform.bind_ticket($1, $2, $3, $4)"
_OUTBOX_INSERT = insert(outbox_table)


class EventMeta(TypedDict, total=False):
    """Who and which trace an emitted event belongs to, when not the unit of work's own."""

    person_id: uuid.UUID | None
    org_id: uuid.UUID | None
    trace_id: str | None
    traceparent: str | None


class Database:
    """What every door needs to reach the core: engine, sessions, token and password services."""

    def __init__(self, settings: Settings, engine: AsyncEngine | None = None) -> None:
        self.settings = settings
        backstops = session_backstops(
            idle_in_transaction_seconds=settings.db_idle_in_transaction_timeout_seconds,
            keepalives_idle_seconds=settings.db_tcp_keepalives_idle_seconds,
            keepalives_interval_seconds=settings.db_tcp_keepalives_interval_seconds,
            keepalives_count=settings.db_tcp_keepalives_count,
        )
        self.engine = engine or make_engine(
            app_database_url(settings),
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            server_settings=backstops,
        )
        self.sessionmaker: async_sessionmaker[AsyncSession] = make_sessionmaker(self.engine)
        # System and service work runs on its own role and pool (see `Settings.db_system_role`).
        self.system_engine = make_engine(
            system_database_url(settings),
            pool_size=settings.db_system_pool_size,
            max_overflow=settings.db_max_overflow,
            server_settings=backstops,
        )
        self.system_sessionmaker: async_sessionmaker[AsyncSession] = make_sessionmaker(self.system_engine)
        self.tokens = Tokens(settings)
        self.passwords = Passwords(settings.password_hash_profile)

    def uow(self, *, trace_id: str | None = None) -> UnitOfWork:
        """An anonymous unit of work; `core.auth.resolve_context` binds it to a caller."""
        return UnitOfWork(self, Mode.ANONYMOUS, trace_id=trace_id)

    def system(self, *, trace_id: str | None = None, settings_deferred: bool = False) -> UnitOfWork:
        """`settings_deferred`: its first statements set a context of their own (a handler's
        savepoint acting for a tenant), so none is set on opening; until one is, row-level
        security shows nothing."""
        return UnitOfWork(self, Mode.SYSTEM, trace_id=trace_id, settings_deferred=settings_deferred)

    def service(
        self, person_id: uuid.UUID | None, org_id: uuid.UUID | None, *, trace_id: str | None = None
    ) -> UnitOfWork:
        return UnitOfWork(self, Mode.SERVICE, person_id=person_id, org_id=org_id, trace_id=trace_id)

    async def ping(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
            return True
        except (OSError, DBAPIError):
            return False

    async def dispose(self) -> None:
        await self.engine.dispose()
        await self.system_engine.dispose()


def app_database_url(settings: Settings) -> str:
    if settings.app_database_url:
        return settings.app_database_url
    if not settings.database_url:
        raise RuntimeError("no database configured: set DATABASE_URL or start the embedded server")
    return with_role(settings.database_url, settings.db_app_role, settings.app_db_password).render_as_string(
        hide_password=False
    )


def system_database_url(settings: Settings) -> str:
    if settings.system_database_url:
        return settings.system_database_url
    if not settings.database_url:
        raise RuntimeError("no database configured: set DATABASE_URL or start the embedded server")
    return with_role(
        settings.database_url, settings.db_system_role, settings.system_db_password
    ).render_as_string(hide_password=False)


_TRUSTED = (Mode.SERVICE, Mode.SYSTEM)


def _settings_literal(mode: object, person_id: object, org_id: object, trace_id: object) -> str | None:
    """`_SETTINGS_SQL`'s settings with their values as literals, or None unless every value has
    the shape the server makes it in: a mode of `Mode`, UUIDs (or none), a trace id of 32 hex
    digits. Each is then quote-free by construction."""
    if not isinstance(mode, Mode):  # its values are lowercase words
        return None
    ids: list[str] = []
    for value in (person_id, org_id):
        if value is None:
            ids.append("")
        elif type(value) is uuid.UUID:
            ids.append(str(value))
        else:
            return None
    if not (isinstance(trace_id, str) and _TRACE_ID.fullmatch(trace_id)):
        return None
    return _SETTINGS_LITERAL.format(mode.value, ids[0], ids[1], trace_id)


class UnitOfWork:
    def __init__(
        self,
        db: Database,
        mode: Mode,
        *,
        person_id: uuid.UUID | None = None,
        org_id: uuid.UUID | None = None,
        trace_id: str | None = None,
        settings_deferred: bool = False,
    ) -> None:
        self.db = db
        self.mode = mode
        self._settings_deferred = settings_deferred
        self.person_id = person_id
        self.org_id = org_id
        self.trace_id = trace_id or current_trace_id() or new_trace_id()
        self.ctx: TenantContext | None = None
        self._ticket: str | None = None
        # What the bound context may use (toolsets), as read in the current transaction by the
        # statement that bound it: the installation gate answers from it (`available_to`).
        self._available: frozenset[str] | None = None
        self._events: list[dict[str, Any]] = []
        self._last_writes: list[Callable[[], Awaitable[None]]] = []
        # The transaction's last statements, sent with its COMMIT, each with the general path
        # taken when they refuse (`finish_with`).
        self._finish: list[tuple[str, Callable[[], Awaitable[None]]]] = []
        # The transaction runs on a connection of the pool; an ORM session exists only once a
        # service uses the ORM (`session`), on that same connection and in that transaction.
        # Executing through an `AsyncConnection` costs about three quarters of a session's
        # Python per transaction and far less per statement, and most requests need no ORM.
        self._conn: AsyncConnection | None = None
        self._session: AsyncSession | None = None
        self._on_system_pool = False
        # Whether a transaction of this unit committed before its last one (`released`, a move
        # to the system pool): a failure afterwards undoes only the last one.
        self._committed_before = False

    @property
    def session(self) -> AsyncSession:
        """The ORM session of this unit of work, created on first use on its connection. It
        controls the connection's transaction as its own (`join_transaction_mode`
        "control_fully"): its commit and rollback are the unit's, whatever ran before on the
        connection alone."""
        session = self._session
        if session is None:
            conn = self._conn
            if conn is None:
                raise RuntimeError("the unit of work is not open")
            maker = self.db.system_sessionmaker if self._on_system_pool else self.db.sessionmaker
            session = self._session = maker(bind=conn)
            if conn.in_transaction():
                # Joined now, not at its first statement: a rollback through the session before
                # it ran one (a failed handler's) must undo what ran on the connection. With a
                # transaction already begun, joining it does no I/O.
                session.sync_session.connection()
        return session

    async def _connection(self) -> AsyncConnection:
        """The connection this unit's own statements run on. Once a session exists they go
        through it, so that it takes part in every transaction they start: its rollback (a
        failed handler's) then undoes them too."""
        if self._session is not None:
            return await self._session.connection()
        if self._conn is None:
            raise RuntimeError("the unit of work is not open")
        return self._conn

    async def _checkout(self) -> None:
        """A connection from this unit's pool; BEGIN goes with its first statement."""
        engine = self.db.system_engine if self._on_system_pool else self.db.engine
        self._conn = await engine.connect()

    async def _hand_back(self) -> None:
        """Close the session (its objects detach) and return the connection to its pool; a
        transaction still open there rolls back."""
        session, conn = self._session, self._conn
        self._session = self._conn = None
        self._available = None
        try:
            if session is not None:
                await session.close()
        finally:
            if conn is not None:
                await conn.close()

    async def __aenter__(self) -> Self:
        self._on_system_pool = self.mode in _TRUSTED
        try:
            await self._checkout()
            if self.mode is not Mode.ANONYMOUS and not self._settings_deferred:
                await self.apply_settings()
        except (DBAPIError, OSError) as err:
            await self._hand_back()
            if not connection_lost(err):
                raise
            raise translate_db_error(err) from err
        return self

    async def apply_settings(self) -> None:
        conn = await self._connection()
        if self.mode is Mode.USER:
            await fetch_on_driver(
                conn, _TICKET_SQL, self.person_id, self.org_id, self._ticket or "", self.trace_id
            )
            return
        values = (
            self.mode.value,
            str(self.person_id) if self.person_id else "",
            str(self.org_id) if self.org_id else "",
            self.trace_id,
        )
        literal = _settings_literal(self.mode, self.person_id, self.org_id, self.trace_id)
        if literal is None:
            await fetch_on_driver(conn, _SETTINGS_SQL, *values)
        else:
            await begin_with(conn, literal, _SETTINGS_SQL, *values)

    def bind(
        self, ctx: TenantContext, ticket: str | None = None, *, available: frozenset[str] | None = None
    ) -> None:
        """Record the caller's context, which `platform.resolve_context` bound (and signed) in
        SQL, and its ticket, so that a later transaction of this unit of work (`released`) is
        bound the same way. `available`: the toolsets the context may use, read by that very
        statement in this transaction (None: not read)."""
        self.ctx = ctx
        self._ticket = ticket
        self._available = available
        self.mode, self.person_id, self.org_id = Mode.USER, ctx.person_id, ctx.org_id

    def available_to(self, ctx: TenantContext) -> frozenset[str]:
        """The toolsets `ctx` may use as read in this very transaction when it was bound;
        empty when they were not read, or the transaction that read them has ended: the gate
        then reads for itself, so an uninstall takes effect on the next transaction."""
        if self._available is None or not self.bound_to(ctx):
            return frozenset()
        return self._available

    def bound_to(self, ctx: TenantContext) -> bool:
        """Whether this open unit of work acts as `ctx`, bound in its current transaction by
        the resolution that produced `ctx` (a later open in the same request needs no SQL)."""
        return self._conn is not None and self.mode is Mode.USER and self.ctx is ctx

    async def act_as_service(self, person_id: uuid.UUID | None, org_id: uuid.UUID | None) -> None:
        """Narrow this unit of work to one tenant (an event handler working for it)."""
        self.mode, self.person_id, self.org_id = Mode.SERVICE, person_id, org_id
        await self._to_system_pool()
        await self.apply_settings()

    async def act_as_system(self) -> None:
        """Work across tenants from here on (admin work, a person's listing over their orgs)."""
        self.mode, self.person_id, self.org_id = Mode.SYSTEM, None, None
        await self._to_system_pool()
        await self.apply_settings()

    async def _to_system_pool(self) -> None:
        """The request path's connections can never hold a system or service context: the
        policies honour those only for the system role. What this unit of work did so far as
        a caller commits (it was checked in that context); the rest is a new transaction on the
        system role's pool. Objects loaded before are detached: re-read what you change."""
        if self._on_system_pool:
            return
        await self.commit()
        await self._hand_back()
        self._on_system_pool = True
        await self._checkout()

    async def rows(
        self, stmt: Executable, params: Mapping[str, Any], *, flush: bool = True
    ) -> CursorResult[*tuple[Any, ...]]:
        """Execute a statement that loads no ORM object on this unit's connection, in this
        transaction, without creating a session: its rows come back without the ORM's execution
        around them (about a third of a statement's Python on a send or a run). A pending ORM
        change is flushed first, as the session's own execute would; `flush=False` for a
        statement that writes the pending changes itself (the caller then marks them written)."""
        session = self._session
        if flush and session is not None and (session.new or session.dirty or session.deleted):
            await session.flush()
        return await (await self._connection()).execute(stmt, params)

    async def _safe_rollback(self) -> None:
        try:
            await self._rollback()
        except (DBAPIError, OSError):  # the connection is already gone
            log.warning("rollback_failed")

    async def fetch(self, sql: str, *args: Any, flush: bool = True) -> list[Any]:
        """The rows of a fixed statement of the request path (`$n` parameters, asyncpg
        records) on the driver's connection, in this transaction (`core.db.fetch_on_driver`):
        the cheapest way to a statement's rows. A pending ORM change is flushed first (not with
        `flush=False`: a statement that writes the pending changes itself, as `rows`)."""
        session = self._session
        if flush and session is not None and (session.new or session.dirty or session.deleted):
            await session.flush()
        return await fetch_on_driver(await self._connection(), sql, *args)

    # --- events ---------------------------------------------------------------------------

    def emit(self, name: str, data: dict[str, Any], **meta: Unpack[EventMeta]) -> uuid.UUID:
        """Queue an event; it is written to the outbox in this transaction, so it exists exactly
        when the change it describes does. Names are `{domain}/{entity}.{action}`. `trace_id`:
        the trace the event continues when it is not this unit of work's (a job's own trace);
        `traceparent`: the span its handlers continue when not the active one (a sweep emitting
        for work a request started earlier)."""
        row = self.event_row(name, data, **meta)
        self._events.append(row)
        event_id: uuid.UUID = row["id"]
        return event_id

    def event_row(self, name: str, data: dict[str, Any], **meta: Unpack[EventMeta]) -> dict[str, Any]:
        """The outbox row `emit` queues, for a statement of this transaction that writes the
        event beside the change it describes (a run's job, hold and event in one statement)."""
        validate_event_name(name)
        ctx = self.ctx
        person_id, org_id = meta.get("person_id"), meta.get("org_id")
        trace_id, traceparent = meta.get("trace_id"), meta.get("traceparent")
        pid = person_id or (ctx.person_id if ctx else self.person_id)
        oid = org_id if org_id is not None else (ctx.org_id if ctx else self.org_id)
        event_id = uuid.uuid4()
        # A stored traceparent names its trace: the event's trace id agrees with its span's.
        tid = trace_id or (traceparent.split("-")[1] if traceparent else None) or self.trace_id
        payload: dict[str, Any] = to_jsonable_python(data)
        payload.update(
            {
                "trace_id": tid,
                "person_id": str(pid) if pid else None,
                "org_id": str(oid) if oid else None,
                "tenant_id": str(oid or pid) if (oid or pid) else None,
            }
        )
        return {
            "id": event_id,
            "name": name,
            "data": payload,
            "person_id": pid,
            "org_id": oid,
            "trace_id": tid,
            # The emitting span, which the handlers' spans continue; an event carried into a
            # trace of its own (a job's) starts that trace, linked to this span.
            "traceparent": traceparent or current_traceparent(),
        }

    def take_event(self) -> dict[str, Any] | None:
        """The one event queued so far as the parameters of `core.outbox.EVENT_CTE`: the
        statement that carries that CTE writes it, one round trip fewer than the commit's
        INSERT. None when none or several are queued (the commit writes them, as before). The
        caller executes that statement in this transaction; if it fails, the transaction does,
        and the event with it."""
        if len(self._events) != 1:
            return None
        row = self._events.pop()
        return {f"outbox_{c}": row[c] for c in EVENT_COLUMNS}

    async def flush_events(self) -> None:
        if not self._events:
            return
        # One round trip; a statement trigger NOTIFYs the relay when this commits. The
        # statement is built once, with the rows bound as parameters: several rows go as the
        # driver's executemany, one pipelined batch in emitting order (a multi-row `.values()`
        # was a new statement, compiled again on every flush: ~7 % of a relay's CPU per job).
        conn = await self._connection()
        await conn.execute(_OUTBOX_INSERT, self._events[0] if len(self._events) == 1 else self._events)
        self._events = []

    def before_commit(self, writes: Callable[[], Awaitable[None]]) -> None:
        """Run `writes` at commit, after everything else of the transaction was written (its
        events too), in the order given: a transaction's last writes, for a row lock that every
        run of a context needs (its credit account) to be held from them to the commit only.
        What they emit is written after them; if they fail, the commit does."""
        self._last_writes.append(writes)

    def finish_with(self, literal: str, otherwise: Callable[[], Awaitable[None]]) -> None:
        """End the transaction with `literal`, the quick path of a last write (a statement with
        its values written in as literals, which the caller made safe), sent together with the
        COMMIT (`core.db.commit_with`): the row locks it takes are held for no turn of the event
        loop. They go after every other write, `before_commit`'s included, in the order given.
        If one refuses (SQLSTATE `core.db.QUICK_PATH_REFUSED`), nothing of any of them remains
        and each one's `otherwise()`, its general path, runs before a plain commit."""
        self._finish.append((literal, otherwise))

    # --- lifecycle ------------------------------------------------------------------------

    async def commit(self) -> None:
        self._available = None
        await self.flush_events()
        if self._last_writes:
            last, self._last_writes = self._last_writes, []
            for writes in last:
                await writes()
            await self.flush_events()
        if self._finish:
            finish, self._finish = self._finish, []
            session = self._session
            if session is not None and (session.new or session.dirty or session.deleted):
                await session.flush()
            if not await commit_with(await self._connection(), ";".join(sql for sql, _ in finish)):
                for _, otherwise in finish:
                    await otherwise()
                await self.flush_events()
        if self._session is not None:
            await self._session.commit()  # flushes the ORM's changes; commits the connection's
        conn = self._conn
        if conn is not None and conn.in_transaction():
            await conn.commit()
        self._committed_before = True

    async def _rollback(self) -> None:
        self._last_writes = []
        self._finish = []
        self._available = None
        if self._session is not None:
            await self._session.rollback()  # the connection's transaction, and the ORM's state
        conn = self._conn
        if conn is not None and conn.in_transaction():
            await conn.rollback()

    @asynccontextmanager
    async def released(self) -> AsyncIterator[None]:
        """Hold no connection inside: for a slow call to another service (a drafting model may
        take many seconds), which must not pin a pooled connection and a transaction the whole
        time. What was done so far commits, with its events; on the way out a new transaction
        starts with the same tenant settings, so row-level security reads as before. Work after
        it must re-read what it relies on: others may have changed it meanwhile."""
        await self.commit()
        # Objects loaded so far stay readable but leave the session (closed with its connection;
        # the next use of the ORM starts another): a query afterwards loads the rows as they are
        # then, not the identity map's copies from before.
        await self._hand_back()
        try:
            yield
        finally:
            await self._checkout()
            await self.apply_settings()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc is None:
                await self.commit()
            else:
                self._events = []
                await self._rollback()
        except IntegrityError as err:
            await self._rollback()
            raise translate_db_error(err) from err
        except (DBAPIError, OSError) as err:
            # A commit refused as a transient conflict (serialization failure) is as retryable
            # as one that lost its connection; anything else is a bug and stays one.
            if not (connection_lost(err) or transaction_conflict(err)):
                raise
            await self._safe_rollback()
            raise translate_db_error(err, saved_before=self._committed_before) from err
        finally:
            await self._hand_back()
        if exc is not None and (
            isinstance(exc, IntegrityError) or connection_lost(exc) or transaction_conflict(exc)
        ):
            raise translate_db_error(exc, saved_before=self._committed_before) from exc
