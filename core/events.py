"""The event spine: the outbox, the handler registry and the relay.

`UnitOfWork.emit()` writes an outbox row in the transaction that made the change. The relay
delivers committed rows — to Inngest when configured (the outbox id is the event id, so resends
deduplicate), otherwise to the registered handlers in-process: at least once, one delivery per
(event, handler), retried with backoff, then dead-lettered, never blocking other handlers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import importlib
import pkgutil
import random
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import asyncpg
from cronsim import CronSim
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import Uuid

from core.db import Base, asyncpg_dsn
from core.observability import get_logger, trace
from core.uow import Database, UnitOfWork, app_database_url

log = get_logger("atlilith.events")

NOTIFY_CHANNEL = "atlilith_outbox"
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

outbox_table = Table(
    "outbox",
    Base.metadata,
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("name", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("person_id", Uuid(as_uuid=True)),
    Column("org_id", Uuid(as_uuid=True)),
    Column("trace_id", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    # pending -> dispatched (fanned out to in-process deliveries) | published (sent to Inngest)
    Column("status", Text, server_default="pending", nullable=False),
    Column("attempts", Integer, server_default="0", nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("last_error", Text),
    Column("relayed_at", DateTime(timezone=True)),
    PrimaryKeyConstraint("id"),
    Index("ix_outbox_pending", "seq", postgresql_where=text("status = 'pending'")),
    Index("ix_outbox_created_at", "created_at"),
    Index("ix_outbox_seq", "seq", unique=True),  # the live stream reads by position
    schema="platform",
)

deliveries_table = Table(
    "event_deliveries",
    Base.metadata,
    Column("event_id", Uuid(as_uuid=True), nullable=False),
    Column("handler", Text, nullable=False),
    Column("status", Text, server_default="pending", nullable=False),  # pending | done | dead
    Column("attempts", Integer, server_default="0", nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    PrimaryKeyConstraint("event_id", "handler"),
    Index("ix_event_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    schema="platform",
)

schedule_runs_table = Table(
    "schedule_runs",
    Base.metadata,
    Column("name", Text, nullable=False),
    Column("fire_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    PrimaryKeyConstraint("name", "fire_at"),
    schema="platform",
)


# --- events and handlers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    name: str
    data: dict[str, Any]
    ts: dt.datetime

    @property
    def trace_id(self) -> str | None:
        value = self.data.get("trace_id")
        return str(value) if value else None

    @property
    def person_id(self) -> uuid.UUID | None:
        return _uuid_or_none(self.data.get("person_id"))

    @property
    def org_id(self) -> uuid.UUID | None:
        return _uuid_or_none(self.data.get("org_id"))


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def event_uuid(raw_id: str | None, name: str, data: dict[str, Any]) -> uuid.UUID:
    """Outbox ids are UUIDs; an id from elsewhere maps to a stable UUID so replays still dedupe."""
    if raw_id:
        try:
            return uuid.UUID(raw_id)
        except ValueError:
            return uuid.uuid5(uuid.NAMESPACE_URL, f"inngest:{raw_id}")
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{sorted(data.items())!r}")


def validate_event_name(name: str) -> None:
    if not _EVENT_NAME.match(name):
        raise ValueError(f"event names are '{{domain}}/{{entity}}.{{action}}', got {name!r}")


EventHandler = Callable[[Event, UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class ScheduledRun:
    name: str
    fire_at: dt.datetime


ScheduledHandler = Callable[[ScheduledRun, UnitOfWork], Awaitable[None]]


@dataclass(frozen=True)
class HandlerSpec:
    name: str
    patterns: tuple[str, ...]
    fn: EventHandler
    max_attempts: int | None = None

    def matches(self, event_name: str) -> bool:
        return any(fnmatch.fnmatchcase(event_name, p) for p in self.patterns)


@dataclass(frozen=True)
class ScheduleSpec:
    name: str
    cron: str
    fn: ScheduledHandler


@dataclass
class Registry:
    handlers: dict[str, HandlerSpec] = field(default_factory=dict)
    schedules: dict[str, ScheduleSpec] = field(default_factory=dict)

    def for_event(self, name: str) -> list[HandlerSpec]:
        return [h for h in self.handlers.values() if h.matches(name)]


registry = Registry()


def subscribe(
    *patterns: str, name: str | None = None, max_attempts: int | None = None
) -> Callable[[EventHandler], EventHandler]:
    """Register an idempotent handler for events matching the glob patterns
    (e.g. `bookings/booking.*`). The handler runs in a transaction scoped to the event's tenant."""

    def decorator(fn: EventHandler) -> EventHandler:
        spec_name = name or f"{fn.__module__}.{fn.__qualname__}"
        registry.handlers[spec_name] = HandlerSpec(spec_name, tuple(patterns), fn, max_attempts)
        return fn

    return decorator


def schedule(cron: str, *, name: str | None = None) -> Callable[[ScheduledHandler], ScheduledHandler]:
    """Register a cron-style handler (UTC). It runs once per fire time across all processes."""
    CronSim(cron, dt.datetime.now(dt.UTC))  # fail at import on a bad expression

    def decorator(fn: ScheduledHandler) -> ScheduledHandler:
        spec_name = name or f"{fn.__module__}.{fn.__qualname__}"
        registry.schedules[spec_name] = ScheduleSpec(spec_name, cron, fn)
        return fn

    return decorator


def load_handlers() -> Registry:
    """Import every `core.<feature>.handlers` module so their decorators register."""
    import core

    for module in pkgutil.iter_modules(core.__path__):
        if module.ispkg:
            try:
                importlib.import_module(f"core.{module.name}.handlers")
            except ModuleNotFoundError as exc:
                if exc.name != f"core.{module.name}.handlers":
                    raise
    return registry


# --- running one handler --------------------------------------------------------------------------


class HandlerFailed(Exception):
    """A handler raised; the delivery was recorded for retry (or dead-lettered)."""


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    # Full jitter: retries of many failed deliveries spread out instead of stampeding.
    return float(random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1)))))  # noqa: S311


_LOCK_DELIVERY = text(
    "SELECT status, attempts FROM platform.event_deliveries"
    " WHERE event_id = :event_id AND handler = :handler FOR UPDATE"
)
_ENSURE_DELIVERY = text(
    "INSERT INTO platform.event_deliveries (event_id, handler) VALUES (:event_id, :handler)"
    " ON CONFLICT DO NOTHING"
)
_MARK_DONE = text(
    "UPDATE platform.event_deliveries SET status = 'done', attempts = attempts + 1, last_error = NULL,"
    " updated_at = now() WHERE event_id = :event_id AND handler = :handler"
)
_MARK_FAILED = text(
    "UPDATE platform.event_deliveries SET attempts = :attempts, last_error = :error, status = :status,"
    " next_attempt_at = now() + make_interval(secs => :delay), updated_at = now()"
    " WHERE event_id = :event_id AND handler = :handler"
)


async def _invoke(db: Database, uow: UnitOfWork, spec: HandlerSpec, event: Event, attempts: int) -> bool:
    """Run the handler in a savepoint scoped to the event's tenant; record the outcome in the
    enclosing transaction. Returns True when it succeeded."""
    timeout = 60.0
    try:
        async with uow.session.begin_nested():
            await uow.act_as_service(event.person_id, event.org_id)
            async with asyncio.timeout(timeout):
                await spec.fn(event, uow)
            await uow.flush_events()
    except Exception as exc:
        uow._events = []
        await uow.act_as_system()
        max_attempts = spec.max_attempts or db.settings.handler_max_attempts
        dead = attempts + 1 >= max_attempts
        delay = backoff_seconds(
            attempts + 1, db.settings.handler_backoff_base_seconds, db.settings.handler_backoff_max_seconds
        )
        await uow.session.execute(
            _MARK_FAILED,
            {
                "event_id": event.id,
                "handler": spec.name,
                "attempts": attempts + 1,
                "error": f"{type(exc).__name__}: {exc}"[:2000],
                "status": "dead" if dead else "pending",
                "delay": delay,
            },
        )
        log.warning(
            "handler_failed",
            handler=spec.name,
            event_name=event.name,
            event_id=str(event.id),
            attempt=attempts + 1,
            dead_lettered=dead,
            error=type(exc).__name__,
            exc_info=True,
        )
        return False
    await uow.act_as_system()
    await uow.session.execute(_MARK_DONE, {"event_id": event.id, "handler": spec.name})
    return True


async def run_handler_once(db: Database, spec: HandlerSpec, event: Event) -> bool:
    """Deliver one event to one handler exactly once in effect (used by the Inngest functions):
    a replay of a delivery already done is a no-op. Raises HandlerFailed so the caller retries."""
    with trace(event.trace_id, handler=spec.name, event_name=event.name, event_id=str(event.id)):
        async with db.system(trace_id=event.trace_id) as uow:
            await uow.session.execute(_ENSURE_DELIVERY, {"event_id": event.id, "handler": spec.name})
            row = (
                await uow.session.execute(_LOCK_DELIVERY, {"event_id": event.id, "handler": spec.name})
            ).one()
            if row.status == "done":
                log.info("handler_replay_skipped")
                return False
            ok = await _invoke(db, uow, spec, event, row.attempts)
        if not ok:
            raise HandlerFailed(f"handler {spec.name} failed for event {event.id}")
        return True


# --- sinks --------------------------------------------------------------------------------------


class Sink(Protocol):
    """Where the relay publishes committed events when handlers don't run in-process."""

    async def publish(self, events: Sequence[Event]) -> None: ...


# --- the relay ----------------------------------------------------------------------------------

_CLAIM_OUTBOX = text(
    "SELECT id, name, data, created_at, attempts FROM platform.outbox"
    " WHERE status = 'pending' AND next_attempt_at <= now()"
    " ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)
_MARK_RELAYED = text(
    "UPDATE platform.outbox SET status = :status, relayed_at = now(), last_error = NULL WHERE id = ANY(:ids)"
)
_MARK_PUBLISH_FAILED = text(
    "UPDATE platform.outbox SET attempts = attempts + 1, last_error = :error,"
    " next_attempt_at = now() + make_interval(secs => :delay) WHERE id = ANY(:ids)"
)
_FAN_OUT = text(
    "INSERT INTO platform.event_deliveries (event_id, handler)"
    " SELECT :event_id, h FROM unnest(CAST(:handlers AS text[])) AS h ON CONFLICT DO NOTHING"
)
_CLAIM_DELIVERY = text(
    "SELECT d.event_id, d.handler, d.attempts, e.name, e.data, e.created_at"
    " FROM platform.event_deliveries d JOIN platform.outbox e ON e.id = d.event_id"
    " WHERE d.status = 'pending' AND d.next_attempt_at <= now()"
    " ORDER BY d.next_attempt_at LIMIT 1 FOR UPDATE OF d SKIP LOCKED"
)
_INSERT_SCHEDULE_RUN = text(
    "INSERT INTO platform.schedule_runs (name, fire_at) VALUES (:name, :fire_at)"
    " ON CONFLICT DO NOTHING RETURNING name"
)


class Relay:
    """Moves committed outbox rows on. Safe to run in several processes at once."""

    def __init__(self, db: Database, sink: Sink | None = None, *, workers: int = 4) -> None:
        self.db = db
        self.sink = sink
        self.workers = workers
        self.registry = load_handlers()
        self._wake = asyncio.Event()
        self._next_fire: dict[str, dt.datetime] = {}

    # one pass of each stage; tests call these directly to control timing
    async def pump(self) -> int:
        """Claim a batch of pending outbox rows and publish or fan them out. Returns the count."""
        settings = self.db.settings
        async with self.db.system() as uow:
            rows = (await uow.session.execute(_CLAIM_OUTBOX, {"limit": settings.relay_batch_size})).all()
            if not rows:
                return 0
            ids = [r.id for r in rows]
            if self.sink is not None:
                events = [Event(r.id, r.name, r.data, r.created_at) for r in rows]
                try:
                    # A slow sink must not hold these rows' locks (and the relay) indefinitely.
                    async with asyncio.timeout(settings.relay_publish_timeout_seconds):
                        await self.sink.publish(events)
                except Exception as exc:
                    # Publishing never dead-letters: the outbox keeps events until the sink is back.
                    delay = backoff_seconds(max(r.attempts for r in rows) + 1, 1.0, 60.0)
                    await uow.session.execute(
                        _MARK_PUBLISH_FAILED,
                        {"ids": ids, "error": f"{type(exc).__name__}: {exc}"[:2000], "delay": delay},
                    )
                    log.warning("publish_failed", count=len(ids), error=type(exc).__name__, retry_in=delay)
                    return 0
                await uow.session.execute(_MARK_RELAYED, {"ids": ids, "status": "published"})
            else:
                for r in rows:
                    handlers = [h.name for h in self.registry.for_event(r.name)]
                    if handlers:
                        await uow.session.execute(_FAN_OUT, {"event_id": r.id, "handlers": handlers})
                await uow.session.execute(_MARK_RELAYED, {"ids": ids, "status": "dispatched"})
            return len(rows)

    async def deliver_one(self) -> bool:
        """Run one due delivery. Returns False when nothing is due."""
        async with self.db.system() as uow:
            row = (await uow.session.execute(_CLAIM_DELIVERY)).one_or_none()
            if row is None:
                return False
            event = Event(row.event_id, row.name, row.data, row.created_at)
            spec = self.registry.handlers.get(row.handler)
            with trace(event.trace_id, handler=row.handler, event_name=event.name, event_id=str(event.id)):
                if spec is None:
                    await uow.session.execute(
                        _MARK_FAILED,
                        {
                            "event_id": event.id,
                            "handler": row.handler,
                            "attempts": row.attempts + 1,
                            "error": "no such handler in this build",
                            "status": "dead",
                            "delay": 0,
                        },
                    )
                    log.error("handler_unknown")
                    return True
                await _invoke(self.db, uow, spec, event, row.attempts)
            return True

    async def deliver_due(self) -> int:
        """Run every due delivery with a few concurrent workers; returns how many ran."""
        count = 0

        async def worker() -> None:
            nonlocal count
            while await self.deliver_one():
                count += 1

        await asyncio.gather(*(worker() for _ in range(self.workers)))
        return count

    async def tick_schedules(self, now: dt.datetime | None = None) -> list[str]:
        """Fire each schedule whose time has come, once across processes. Returns fired names."""
        now = now or dt.datetime.now(dt.UTC)
        fired: list[str] = []
        for spec in self.registry.schedules.values():
            due = self._next_fire.get(spec.name)
            if due is None:
                due = next(iter(CronSim(spec.cron, now - dt.timedelta(minutes=1))))
                self._next_fire[spec.name] = due
            if due > now:
                continue
            self._next_fire[spec.name] = next(iter(CronSim(spec.cron, now)))
            if await run_schedule(self.db, spec, due):
                fired.append(spec.name)
        return fired

    async def drain(self, *, rounds: int = 50) -> int:
        """Relay and deliver until nothing is left that is due now (tests, shutdown)."""
        total = 0
        for _ in range(rounds):
            moved = await self.pump()
            ran = 0 if self.sink is not None else await self.deliver_due()
            total += moved + ran
            if moved == 0 and ran == 0:
                break
        return total

    def wake(self) -> None:
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """The long-running loop: woken by NOTIFY, polling as a fallback."""
        listener = asyncio.create_task(self._listen(stop))
        try:
            while not stop.is_set():
                try:
                    await self.drain()
                    if self.sink is None:
                        await self.tick_schedules()
                except Exception:
                    log.exception("relay_iteration_failed")
                self._wake.clear()
                waiter = asyncio.create_task(self._wake.wait())
                stopper = asyncio.create_task(stop.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.db.settings.relay_poll_seconds,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            listener.cancel()
            await asyncio.gather(listener, return_exceptions=True)

    async def _listen(self, stop: asyncio.Event) -> None:
        dsn = asyncpg_dsn(app_database_url(self.db.settings))
        while not stop.is_set():
            conn: asyncpg.Connection | None = None
            try:
                conn = await asyncpg.connect(dsn)
                await conn.add_listener(NOTIFY_CHANNEL, lambda *_: self._wake.set())
                self._wake.set()  # catch up on anything committed while we were not listening
                await stop.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                log.warning("relay_listen_failed", error=type(exc).__name__)
                await asyncio.sleep(1.0)
            finally:
                if conn is not None:
                    await conn.close(timeout=2)


async def run_schedule(db: Database, spec: ScheduleSpec, fire_at: dt.datetime) -> bool:
    """Run a scheduled handler for one fire time unless another process already did."""
    with trace(None, schedule=spec.name, fire_at=fire_at.isoformat()):
        try:
            async with db.system() as uow:
                claimed = (
                    await uow.session.execute(_INSERT_SCHEDULE_RUN, {"name": spec.name, "fire_at": fire_at})
                ).one_or_none()
                if claimed is None:
                    return False
                await spec.fn(ScheduledRun(spec.name, fire_at), uow)
            log.debug("schedule_ran")  # every minute per schedule: the schedule_runs table keeps them
            return True
        except Exception:
            log.exception("schedule_failed")
            return False


# --- platform housekeeping ----------------------------------------------------------------------


@schedule("17 * * * *", name="platform.outbox_retention")
async def purge_relayed_events(run: ScheduledRun, uow: UnitOfWork) -> None:
    """Delete relayed events (and their finished deliveries) past the retention window."""
    days = uow.db.settings.outbox_retention_days
    await uow.session.execute(
        text(
            "DELETE FROM platform.event_deliveries d USING platform.outbox e"
            " WHERE e.id = d.event_id AND d.status = 'done'"
            " AND e.created_at < now() - make_interval(days => :d)"
        ),
        {"d": days},
    )
    await uow.session.execute(
        text(
            "DELETE FROM platform.outbox e WHERE e.status <> 'pending'"
            " AND e.created_at < now() - make_interval(days => :d)"
            " AND NOT EXISTS (SELECT 1 FROM platform.event_deliveries d"
            " WHERE d.event_id = e.id AND d.status <> 'done')"
        ),
        {"d": days},
    )
    await uow.session.execute(
        text("DELETE FROM platform.schedule_runs WHERE fire_at < now() - make_interval(days => :d)"),
        {"d": days},
    )
