"""Engines, sessions, the declarative Base and the per-request statement counter."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, NoReturn, cast

from asyncpg.transaction import TransactionState
from sqlalchemy import CheckConstraint, ClauseElement, MetaData, event, exc
from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.sql import func
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import DateTime, Uuid
from sqlalchemy.util import greenlet_spawn

# Stable constraint names: errors map a violated constraint to a precise domain error by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def component_schemas() -> tuple[str, ...]:
    """One Postgres schema per component (from the loaded models); components may reference
    `platform`, never each other."""
    return tuple(sorted({t.schema for t in Base.metadata.tables.values() if t.schema}))


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {
        uuid.UUID: Uuid(as_uuid=True),
        dt.datetime: DateTime(timezone=True),
    }


def uuid_pk() -> Mapped[uuid.UUID]:
    return mapped_column(primary_key=True, default=uuid.uuid4)


def created_at() -> Mapped[dt.datetime]:
    return mapped_column(server_default=func.now(), nullable=False)


def updated_at() -> Mapped[dt.datetime]:
    return mapped_column(server_default=func.now(), onupdate=func.now(), nullable=False)


class Timestamped:
    """When a row was created and last changed: now() on insert, and `updated_at` now() again in
    every UPDATE that SQLAlchemy builds for the table (raw SQL sets it itself)."""

    created_at: Mapped[dt.datetime] = created_at()
    updated_at: Mapped[dt.datetime] = updated_at()


def sql_in(column: str, values: tuple[str, ...]) -> str:
    """`column IN ('a', 'b')`: a condition for CHECKs and partial indexes (values are constants)."""
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def one_of(column: str, values: tuple[str, ...], *, nullable: bool = False) -> CheckConstraint:
    """The CHECK of an enumerated text column (or NULL when `nullable`), named after the column:
    `ck_<table>_<column>` by the naming convention, the name errors map to a domain error."""
    condition = sql_in(column, values)
    return CheckConstraint(f"{column} IS NULL OR {condition}" if nullable else condition, name=column)


def asyncpg_url(url: str | URL) -> URL:
    """Accept postgres://, postgresql:// or postgresql+asyncpg:// and return the asyncpg form."""
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.drivername in {"postgres", "postgresql", "postgresql+psycopg", "postgresql+psycopg2"}:
        parsed = parsed.set(drivername="postgresql+asyncpg")
    if parsed.drivername != "postgresql+asyncpg":
        raise ValueError(f"unsupported database URL scheme {parsed.drivername!r}: PostgreSQL only")
    return parsed


def with_role(url: str | URL, role: str, password: str | None) -> URL:
    return asyncpg_url(url).set(username=role, password=password)


def asyncpg_dsn(url: str | URL) -> str:
    """A DSN raw asyncpg understands (benchmarks and LISTEN use asyncpg directly)."""
    return asyncpg_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@dataclass
class StatementStats:
    count: int = 0


_stats: ContextVar[StatementStats | None] = ContextVar("atlilith_stmt_stats", default=None)


def start_statement_count() -> StatementStats:
    stats = StatementStats()
    _stats.set(stats)
    return stats


def _count_statement(*_: Any, **__: Any) -> None:
    stats = _stats.get()
    if stats is not None:
        stats.count += 1


def session_backstops(
    *,
    idle_in_transaction_seconds: int = 0,
    keepalives_idle_seconds: int = 0,
    keepalives_interval_seconds: int = 0,
    keepalives_count: int = 0,
) -> dict[str, str]:
    """Per-connection server settings that bound what a vanished client can hold: an idle
    transaction (and its row locks) ends after the timeout; the server's TCP keepalives find a
    peer that went silent (a partition, a frozen host) in seconds instead of the OS's 2 hours.
    0 leaves the server's own default."""
    wanted = {
        "idle_in_transaction_session_timeout": idle_in_transaction_seconds * 1000,
        "tcp_keepalives_idle": keepalives_idle_seconds,
        "tcp_keepalives_interval": keepalives_interval_seconds,
        "tcp_keepalives_count": keepalives_count,
    }
    return {name: str(value) for name, value in wanted.items() if value}


def make_engine(
    url: str | URL,
    *,
    pool_size: int = 10,
    max_overflow: int = 10,
    server_settings: dict[str, str] | None = None,
) -> AsyncEngine:
    engine = create_async_engine(
        asyncpg_url(url),
        pool_size=pool_size,
        max_overflow=max_overflow,
        # Not `pool_pre_ping`: with asyncpg it costs three round trips (BEGIN, ping, ROLLBACK)
        # on every checkout, more than the request's own statements. `_refuse_closed` below
        # drops a connection the server closed (a restart, an admin kill) before it is used;
        # one that dies unannounced fails its first statement as `database_unavailable` (503,
        # retry), and SQLAlchemy then recycles every older connection of the pool.
        pool_pre_ping=False,
        pool_recycle=1800,
        connect_args={"server_settings": server_settings} if server_settings else {},
        # JSONB columns hold caller data; keep non-ASCII text as is.
        json_serializer=dump_json,
    )
    event.listen(engine.sync_engine, "before_cursor_execute", _count_statement)
    event.listen(engine.sync_engine, "checkout", _refuse_closed)
    return engine


def _refuse_closed(dbapi_connection: Any, record: Any, proxy: Any) -> None:
    """A pooled connection whose socket the server closed is replaced before use, with no
    round trip: PostgreSQL says goodbye on shutdown and asyncpg marks the connection closed. The
    pool answers `DisconnectionError` here by discarding it and checking out another."""
    del record, proxy
    raw = getattr(dbapi_connection, "_connection", None)
    if raw is not None and raw.is_closed():
        raise exc.DisconnectionError("the server closed this pooled connection")


def dump_json(value: Any) -> str:
    """JSON as the engine writes a JSON column (a statement binding JSON as text uses it too)."""
    import json

    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def make_sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions of `core.uow.UnitOfWork` are made on the connection the unit already holds, in
    its transaction (`bind=`): "control_fully" makes the session's commit, rollback and close
    that transaction's, as if the session had begun it (the default would only roll back)."""
    return async_sessionmaker(
        engine, expire_on_commit=False, autoflush=True, join_transaction_mode="control_fully"
    )


async def _in_transaction(conn: AsyncConnection) -> tuple[Connection, Any]:
    """`conn`'s sync connection and SQLAlchemy's adapter of the driver's connection, with
    SQLAlchemy's own record of a transaction begun (which its commit and rollback end); the
    driver's BEGIN is left to the first statement."""
    if not conn.in_transaction():
        await conn.begin()
    sync = conn.sync_connection
    if sync is None:
        raise RuntimeError("the connection is not open")
    adapted: Any = sync.connection.dbapi_connection
    return sync, adapted


async def fetch_on_driver(conn: AsyncConnection, sql: str, *args: Any) -> list[Any]:
    """The rows (asyncpg records) of a fixed statement (`$n` parameters) executed on the driver's
    connection under `conn`, in `conn`'s transaction, begun here if it was not: without
    SQLAlchemy's execution around it, a third of a short statement's Python. Its listeners
    (`before_cursor_execute`) hear it as any statement; an error is raised as SQLAlchemy raises
    its own (`IntegrityError`; a lost connection invalidated and reported as such), so the unit
    of work translates it the same way."""
    sync, adapted = await _in_transaction(conn)
    events = sync._has_events or sync.engine._has_events
    if events:
        # What listens to SQLAlchemy's statements (the statement counter) hears this one too,
        # without a cursor or an execution context of SQLAlchemy's.
        for listener in sync.dispatch.before_cursor_execute:
            sql, args = listener(sync, None, sql, args, None, False)
    try:
        # SQLAlchemy's adapter sends BEGIN with the transaction's first statement; so do we.
        if adapted._transaction is None:
            await adapted._start_transaction()
        records: list[Any] = await adapted._connection.fetch(sql, *args)
    except BaseException as err:
        # A cancellation too: the driver's connection may be left mid-message, and SQLAlchemy
        # invalidates it then rather than return it to the pool.
        await greenlet_spawn(_raise_as_sqlalchemy, sync, adapted, err, sql, args)
        raise  # not reached: the call above raises
    if events:
        sync.dispatch.after_cursor_execute(sync, None, sql, args, None, False)
    return records


async def begin_with(conn: AsyncConnection, literal: str, sql: str, *args: Any) -> None:
    """Execute a fixed statement as the first of `conn`'s transaction: BEGIN and `literal` (SQL
    of the same effect with the values written in as literals, which the caller made safe) in
    one simple-query round trip, instead of BEGIN's own round trip before `sql` with `args`. No
    rows are returned. When the driver's transaction has begun already, or is not a plain
    BEGIN (an isolation level, read only), it runs as `fetch_on_driver(conn, sql, *args)`.

    Uses asyncpg's and SQLAlchemy's private state (pinned by the `sqlalchemy` and `asyncpg`
    requirements; `tests/core/test_begin_with.py`): asyncpg's `Transaction` is marked started,
    as its own `start` would after sending BEGIN, and becomes the adapter's transaction, so
    that SQLAlchemy's commit and rollback end it as one it had begun."""
    sync, adapted = await _in_transaction(conn)
    if (
        adapted._transaction is not None
        or adapted.isolation_level is not None
        or adapted.readonly
        or adapted.deferrable
    ):
        await fetch_on_driver(conn, sql, *args)
        return
    events = sync._has_events or sync.engine._has_events
    if events:
        for listener in sync.dispatch.before_cursor_execute:
            literal, _ = listener(sync, None, literal, (), None, False)
    raw = adapted._connection
    transaction = None
    try:
        transaction = raw.transaction()
        await raw.execute("BEGIN;" + literal)
    except BaseException as err:
        if transaction is not None and not raw.is_closed() and raw._protocol.is_in_transaction():
            # BEGIN ran and the statement failed: the transaction is open, aborted, and
            # SQLAlchemy's rollback ends it.
            _started(adapted, transaction)
        await greenlet_spawn(_raise_as_sqlalchemy, sync, adapted, err, literal, ())
        raise  # not reached: the call above raises
    _started(adapted, transaction)
    if events:
        sync.dispatch.after_cursor_execute(sync, None, literal, (), None, False)


def _started(adapted: Any, transaction: Any) -> None:
    """What asyncpg's `Transaction.start` and SQLAlchemy's adapter record once BEGIN succeeded."""
    transaction._state = TransactionState.STARTED
    adapted._connection._top_xact = transaction
    adapted._transaction = transaction


# The SQLSTATE with which a quick path's last statement hands over to the general path
# (`commit_with`; `billing.hold_clear`).
QUICK_PATH_REFUSED = "AT001"


async def commit_with(conn: AsyncConnection, literal: str) -> bool:
    """End `conn`'s transaction with `literal` (a statement with its values written in as
    literals, which the caller made safe) and COMMIT in one simple-query round trip: the row
    locks `literal` takes (a credit account's) then last for the statement and the commit only,
    not for a turn of the caller's event loop besides. True once committed. When `literal`
    refuses with SQLSTATE `QUICK_PATH_REFUSED`, the transaction goes on as it was before it (a
    savepoint) and False is answered; any other error is raised as SQLAlchemy raises its own.

    Uses asyncpg's and SQLAlchemy's private state, as `begin_with` does: once COMMIT succeeded,
    asyncpg's `Transaction` is marked committed and the adapter forgets it, as their own commit
    would, so that SQLAlchemy's commit then ends its own record without I/O."""
    sync, adapted = await _in_transaction(conn)
    if adapted._transaction is None:
        await adapted._start_transaction()
    events = sync._has_events or sync.engine._has_events
    if events:
        for listener in sync.dispatch.before_cursor_execute:
            literal, _ = listener(sync, None, literal, (), None, False)
    raw = adapted._connection
    try:
        await raw.execute(f"SAVEPOINT quick_path;{literal};COMMIT")
    except BaseException as err:
        refused = getattr(err, "sqlstate", None) == QUICK_PATH_REFUSED
        if refused and not raw.is_closed() and raw._protocol.is_in_transaction():
            try:
                await raw.execute("ROLLBACK TO SAVEPOINT quick_path")
            except BaseException as lost:
                await greenlet_spawn(_raise_as_sqlalchemy, sync, adapted, lost, literal, ())
            return False
        await greenlet_spawn(_raise_as_sqlalchemy, sync, adapted, err, literal, ())
        raise  # not reached: the call above raises
    transaction = adapted._transaction
    transaction._state = TransactionState.COMMITTED
    raw._top_xact = None
    adapted._transaction = None
    if events:
        sync.dispatch.after_cursor_execute(sync, None, literal, (), None, False)
    return True


def _raise_as_sqlalchemy(
    sync: Connection, adapted: Any, err: BaseException, sql: str, args: tuple[Any, ...]
) -> NoReturn:
    """What SQLAlchemy does with an error of its own statement: the adapter's DBAPI error for
    asyncpg's, wrapped; the connection invalidated when it is lost or the statement was cut
    short (in a greenlet, as the invalidation closes the driver's connection)."""
    try:
        if isinstance(err, Exception):
            adapted._handle_exception(err)
        raise err
    except BaseException as translated:
        sync._handle_dbapi_exception(translated, sql, args, None, None)


# JSON is written as the engine writes it (`make_engine`'s serializer).
_DRIVER_DIALECT = asyncpg_dialect(json_serializer=dump_json)  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class DriverStatement:
    """A fixed statement of a hot path compiled once for the driver (`$n` parameters), for
    `UnitOfWork.fetch`: through SQLAlchemy's execution (its execution context, parameter and
    result processing, a greenlet) a hold's statement cost about 140 µs of Python, against
    ~100 µs for the whole round trip on the driver. Values are bound by name, as
    for the statement itself; its literal values and its types' bind processing are kept. The
    rows are asyncpg records: a column that needs SQLAlchemy's result processing (a range) comes
    back as the driver decodes it."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]
    processors: Mapping[str, Callable[[Any], Any]]

    @classmethod
    def of(cls, stmt: ClauseElement) -> DriverStatement:
        compiled = cast(SQLCompiler, stmt.compile(dialect=_DRIVER_DIALECT))
        names = tuple(compiled.positiontup or ())
        processors = {}
        for name in names:
            bind = compiled.binds[name]
            processor = bind.type.dialect_impl(_DRIVER_DIALECT).bind_processor(_DRIVER_DIALECT)
            if processor is not None:
                processors[name] = processor
        return cls(compiled.string, names, compiled.params, processors)

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for these values (a name not given: the statement's own)."""
        args = [values[n] if n in values else self.defaults[n] for n in self.names]
        if self.processors:
            for i, name in enumerate(self.names):
                if (processor := self.processors.get(name)) is not None and args[i] is not None:
                    args[i] = processor(args[i])
        return args
