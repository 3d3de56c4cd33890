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
import os
import pkgutil
import random
import re
import socket
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
    update,
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
    # A batch being published to a sink is leased, not locked across the network call.
    Column("claimed_by", Text),
    Column("claim_token", Uuid(as_uuid=True)),
    Column("lease_until", DateTime(timezone=True)),
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
    # The process holding the delivery, this claim's token and the lease's end (see Relay).
    Column("claimed_by", Text),
    Column("claim_token", Uuid(as_uuid=True)),
    Column("lease_until", DateTime(timezone=True)),
    PrimaryKeyConstraint("event_id", "handler"),
    Index("ix_event_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("ix_event_deliveries_dead", "handler", "updated_at", postgresql_where=text("status = 'dead'")),
    schema="platform",
)

schedule_runs_table = Table(
    "schedule_runs",
    Base.metadata,
    Column("name", Text, nullable=False),
    Column("fire_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("claimed_by", Text),
    Column("finished_at", DateTime(timezone=True)),
    Column("last_error", Text),
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


def load_handlers(extra_modules: str = "") -> Registry:
    """Import every `core.<feature>.handlers` module so their decorators register, and the
    comma-separated `extra_modules` (`Settings.handler_modules`: plugins, test probes)."""
    import core

    for name in filter(None, (m.strip() for m in extra_modules.split(","))):
        importlib.import_module(name)

    for module in pkgutil.iter_modules(core.__path__):
        if module.ispkg:
            try:
                importlib.import_module(f"core.{module.name}.handlers")
            except ModuleNotFoundError as exc:
                if exc.name != f"core.{module.name}.handlers":
                    raise
    return registry


# --- running one handler --------------------------------------------------------------------------

HANDLER_TIMEOUT_SECONDS = 60.0
DIED_WHILE_HANDLING = "process died while handling"


class HandlerFailed(Exception):
    """A handler raised; the delivery was recorded for retry (or dead-lettered)."""


class LeaseLost(Exception):
    """The claim on a delivery ran out and another process took it: this run's work is abandoned."""


def process_id() -> str:
    """Who holds a claim: host and pid (read at call time, so a forked worker names itself)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    # Full jitter: retries of many failed deliveries spread out instead of stampeding.
    return float(random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1)))))  # noqa: S311


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:2000]


_LOCK_DELIVERY = text(
    "SELECT status, attempts FROM platform.event_deliveries"
    " WHERE event_id = :event_id AND handler = :handler FOR UPDATE"
)
_ENSURE_DELIVERY = text(
    "INSERT INTO platform.event_deliveries (event_id, handler) VALUES (:event_id, :handler)"
    " ON CONFLICT DO NOTHING"
)
# Outcomes of a leased delivery: written only while the claim is still this run's (`token`), in
# the transaction that committed the handler's work, so an expired run can never commit twice.
_RELEASE = (
    " claimed_by = NULL, claim_token = NULL, lease_until = NULL, updated_at = now()"
    " WHERE event_id = :event_id AND handler = :handler AND claim_token = :token AND status = 'pending'"
)
_MARK_DONE = text(
    "UPDATE platform.event_deliveries SET status = 'done', last_error = NULL, next_attempt_at = now(),"
    + _RELEASE
)
_MARK_FAILED = text(
    "UPDATE platform.event_deliveries SET status = :status, last_error = :error,"
    " next_attempt_at = now() + make_interval(secs => :delay), attempts = :attempts," + _RELEASE
)
# The Inngest path: Inngest owns retries and leases, the row lock only serialises replays.
_MARK_DONE_LOCKED = text(
    "UPDATE platform.event_deliveries SET status = 'done', attempts = attempts + 1, last_error = NULL,"
    " updated_at = now() WHERE event_id = :event_id AND handler = :handler"
)
_MARK_FAILED_LOCKED = text(
    "UPDATE platform.event_deliveries SET attempts = :attempts, last_error = :error, status = :status,"
    " next_attempt_at = now() + make_interval(secs => :delay), updated_at = now()"
    " WHERE event_id = :event_id AND handler = :handler"
)
# Work came free (a retry, a release, a re-drive): wake every relay instead of its next poll.
_NOTIFY_RELEASED = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', 'released')")


async def _run_handler(uow: UnitOfWork, spec: HandlerSpec, event: Event) -> Exception | None:
    """Run the handler in a savepoint scoped to the event's tenant; back in system mode after.
    Returns what it raised (its writes rolled back), or None."""
    try:
        async with uow.session.begin_nested():
            await uow.act_as_service(event.person_id, event.org_id)
            async with asyncio.timeout(HANDLER_TIMEOUT_SECONDS):
                await spec.fn(event, uow)
            await uow.flush_events()
    except Exception as exc:
        uow._events = []
        await uow.act_as_system()
        return exc
    await uow.act_as_system()
    return None


def _failure(db: Database, spec: HandlerSpec, attempt: int, exc: Exception, event: Event) -> dict[str, Any]:
    """What a failed attempt writes: retry after a backoff, or dead after `max_attempts`."""
    max_attempts = spec.max_attempts or db.settings.handler_max_attempts
    dead = attempt >= max_attempts
    log.warning(
        "handler_failed",
        handler=spec.name,
        event_name=event.name,
        event_id=str(event.id),
        attempt=attempt,
        dead_lettered=dead,
        error=type(exc).__name__,
        exc_info=exc,
    )
    return {
        "event_id": event.id,
        "handler": spec.name,
        "attempts": attempt,
        "error": _error_text(exc),
        "status": "dead" if dead else "pending",
        "delay": backoff_seconds(
            attempt, db.settings.handler_backoff_base_seconds, db.settings.handler_backoff_max_seconds
        ),
    }


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
            exc = await _run_handler(uow, spec, event)
            if exc is None:
                await uow.session.execute(_MARK_DONE_LOCKED, {"event_id": event.id, "handler": spec.name})
            else:
                failed = _failure(db, spec, row.attempts + 1, exc, event)
                await uow.session.execute(_MARK_FAILED_LOCKED, failed)
        if exc is not None:
            raise HandlerFailed(f"handler {spec.name} failed for event {event.id}")
        return True


async def redrive_dead(uow: UnitOfWork, handler: str, event_id: uuid.UUID | None = None) -> list[uuid.UUID]:
    """Put a handler's dead deliveries (or one of them) back to pending with fresh attempts and
    wake every relay. Returns the events re-driven; none when nothing was dead (idempotent)."""
    stmt = (
        update(deliveries_table)
        .where(deliveries_table.c.status == "dead", deliveries_table.c.handler == handler)
        .values(
            status="pending",
            attempts=0,
            next_attempt_at=func.now(),
            updated_at=func.now(),
            claimed_by=None,
            claim_token=None,
            lease_until=None,
        )
        .returning(deliveries_table.c.event_id)
    )
    if event_id is not None:
        stmt = stmt.where(deliveries_table.c.event_id == event_id)
    ids = list((await uow.session.execute(stmt)).scalars())
    if ids:
        await uow.session.execute(_NOTIFY_RELEASED)
    return ids


# --- sinks --------------------------------------------------------------------------------------


class Sink(Protocol):
    """Where the relay publishes committed events when handlers don't run in-process."""

    async def publish(self, events: Sequence[Event]) -> None: ...


# --- the relay ----------------------------------------------------------------------------------

# Fan-out only inserts delivery rows, so it claims with a row lock in one short transaction.
_CLAIM_OUTBOX = text(
    "SELECT id, name, data, created_at, attempts FROM platform.outbox"
    " WHERE status = 'pending' AND next_attempt_at <= now()"
    " ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# Publishing waits on the network, so its batch is leased and the lock let go at once. While
# leased, `next_attempt_at` is the lease's end: the rows come due again exactly when it runs out.
_LEASE_OUTBOX = text(
    "UPDATE platform.outbox o SET attempts = o.attempts + 1, claimed_by = :me, claim_token = :token,"
    " lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " FROM (SELECT id FROM platform.outbox WHERE status = 'pending' AND next_attempt_at <= now()"
    "       ORDER BY seq LIMIT :limit FOR UPDATE SKIP LOCKED) due"
    " WHERE o.id = due.id RETURNING o.id, o.seq, o.name, o.data, o.created_at, o.attempts"
)
_MARK_RELAYED = text(
    "UPDATE platform.outbox SET status = :status, relayed_at = now(), last_error = NULL,"
    " claimed_by = NULL, claim_token = NULL, lease_until = NULL, next_attempt_at = now()"
    " WHERE id = ANY(:ids) AND (claim_token IS NULL OR claim_token = :token)"
)
_MARK_PUBLISH_FAILED = text(
    "UPDATE platform.outbox SET last_error = :error, next_attempt_at = now() + make_interval(secs => :delay),"
    " claimed_by = NULL, claim_token = NULL, lease_until = NULL"
    " WHERE claim_token = :token AND status = 'pending'"
)
_FAN_OUT = text(
    "INSERT INTO platform.event_deliveries (event_id, handler)"
    " SELECT :event_id, h FROM unnest(CAST(:handlers AS text[])) AS h ON CONFLICT DO NOTHING"
)
# Claim one due delivery in its own transaction: the attempt is counted and the lease written
# before the handler starts, so a process that dies handling it still used up an attempt.
# A row still carrying an earlier claim's token had its lease run out with no outcome written.
_CLAIM_DELIVERY = text(
    "UPDATE platform.event_deliveries d SET attempts = d.attempts + 1,"
    " last_error = CASE WHEN d.claim_token IS NOT NULL"
    f"   THEN '{DIED_WHILE_HANDLING} (claimed by ' || d.claimed_by || ')' ELSE d.last_error END,"
    " claimed_by = :me, claim_token = :token, lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease), updated_at = now()"
    " FROM (SELECT event_id, handler FROM platform.event_deliveries"
    "       WHERE status = 'pending' AND next_attempt_at <= now()"
    "       ORDER BY next_attempt_at LIMIT 1 FOR UPDATE SKIP LOCKED) due"
    " JOIN platform.outbox e ON e.id = due.event_id"
    " WHERE d.event_id = due.event_id AND d.handler = due.handler"
    " RETURNING d.event_id, d.handler, d.attempts, d.last_error, e.name, e.data, e.created_at"
)
_RENEW_DELIVERIES = text(
    "UPDATE platform.event_deliveries SET lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE claim_token = ANY(:tokens) AND status = 'pending'"
)
_RENEW_OUTBOX = text(
    "UPDATE platform.outbox SET lease_until = now() + make_interval(secs => :lease),"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE claim_token = ANY(:tokens) AND status = 'pending'"
)
# When the next pending row comes due (a retry's backoff, a lease running out), in seconds.
_NEXT_DUE = text(
    "SELECT EXTRACT(EPOCH FROM LEAST("
    " (SELECT min(next_attempt_at) FROM platform.event_deliveries WHERE status = 'pending'),"
    " (SELECT min(next_attempt_at) FROM platform.outbox WHERE status = 'pending')) - now())"
)
_INSERT_SCHEDULE_RUN = text(
    "INSERT INTO platform.schedule_runs (name, fire_at, claimed_by) VALUES (:name, :fire_at, :me)"
    " ON CONFLICT DO NOTHING RETURNING name"
)
_FINISH_SCHEDULE_RUN = text(
    "UPDATE platform.schedule_runs SET finished_at = now(), last_error = :error"
    " WHERE name = :name AND fire_at = :fire_at"
)


@dataclass(frozen=True)
class _Claim:
    token: uuid.UUID
    attempt: int
    last_error: str | None
    handler: str
    event: Event


class Relay:
    """Moves committed outbox rows on. Safe to run in several processes at once: work is
    claimed under a lease (`handler_lease_seconds`) that a live process renews while it works
    and anyone may take over once it runs out."""

    def __init__(self, db: Database, sink: Sink | None = None, *, workers: int = 4) -> None:
        self.db = db
        self.sink = sink
        self.workers = workers
        self.registry = load_handlers(db.settings.handler_modules)
        self._wake = asyncio.Event()
        self._next_fire: dict[str, dt.datetime] = {}
        # Claims this relay is working on, renewed by `run` until their outcome is written.
        self._held_deliveries: set[uuid.UUID] = set()
        self._held_batches: set[uuid.UUID] = set()

    @property
    def lease_seconds(self) -> float:
        return self.db.settings.handler_lease_seconds

    # one pass of each stage; tests call these directly to control timing
    async def pump(self) -> int:
        """Claim a batch of pending outbox rows and publish or fan them out. Returns the count."""
        if self.sink is not None:
            return await self._publish_batch(self.sink)
        async with self.db.system() as uow:
            rows = (
                await uow.session.execute(_CLAIM_OUTBOX, {"limit": self.db.settings.relay_batch_size})
            ).all()
            if not rows:
                return 0
            for r in rows:
                handlers = [h.name for h in self.registry.for_event(r.name)]
                if handlers:
                    await uow.session.execute(_FAN_OUT, {"event_id": r.id, "handlers": handlers})
            await uow.session.execute(
                _MARK_RELAYED, {"ids": [r.id for r in rows], "status": "dispatched", "token": None}
            )
            return len(rows)

    async def _publish_batch(self, sink: Sink) -> int:
        settings = self.db.settings
        token = uuid.uuid4()
        async with self.db.system() as uow:
            rows = (
                await uow.session.execute(
                    _LEASE_OUTBOX,
                    {
                        "me": process_id(),
                        "token": token,
                        "lease": self.lease_seconds,
                        "limit": settings.relay_batch_size,
                    },
                )
            ).all()
        if not rows:
            return 0
        rows = sorted(rows, key=lambda r: r.seq)
        ids = [r.id for r in rows]
        self._held_batches.add(token)
        try:
            events = [Event(r.id, r.name, r.data, r.created_at) for r in rows]
            try:
                async with asyncio.timeout(settings.relay_publish_timeout_seconds):
                    await sink.publish(events)
            except Exception as exc:
                # Publishing never dead-letters: the outbox keeps events until the sink is back.
                delay = backoff_seconds(max(r.attempts for r in rows), 1.0, 60.0)
                async with self.db.system() as uow:
                    await uow.session.execute(
                        _MARK_PUBLISH_FAILED, {"token": token, "error": _error_text(exc), "delay": delay}
                    )
                log.warning("publish_failed", count=len(ids), error=type(exc).__name__, retry_in=delay)
                return 0
            async with self.db.system() as uow:
                # Marked even if the lease ran out meanwhile: the sink dedupes on the event id.
                await uow.session.execute(_MARK_RELAYED, {"ids": ids, "status": "published", "token": token})
            return len(rows)
        finally:
            self._held_batches.discard(token)

    async def _claim(self) -> _Claim | None:
        token = uuid.uuid4()
        async with self.db.system() as uow:
            row = (
                await uow.session.execute(
                    _CLAIM_DELIVERY, {"me": process_id(), "token": token, "lease": self.lease_seconds}
                )
            ).one_or_none()
        if row is None:
            return None
        event = Event(row.event_id, row.name, row.data, row.created_at)
        return _Claim(token, row.attempts, row.last_error, row.handler, event)

    async def deliver_one(self) -> bool:
        """Claim one due delivery (committed with its attempt counted), run its handler in a
        transaction of its own and record the outcome there if the claim is still ours.
        Returns False when nothing is due."""
        claim = await self._claim()
        if claim is None:
            return False
        event = claim.event
        self._held_deliveries.add(claim.token)
        try:
            with trace(event.trace_id, handler=claim.handler, event_name=event.name, event_id=str(event.id)):
                await self._handle(claim)
        finally:
            self._held_deliveries.discard(claim.token)
        return True

    async def _handle(self, claim: _Claim) -> None:
        event = claim.event
        spec = self.registry.handlers.get(claim.handler)
        if spec is None:
            await self._dead_letter(claim, "no such handler in this build", claim.attempt)
            log.error("handler_unknown")
            return
        max_attempts = spec.max_attempts or self.db.settings.handler_max_attempts
        if claim.attempt > max_attempts:
            # Every allowed attempt was used and the last one never wrote an outcome: the
            # handler took its process down (or hung it) each time.
            await self._dead_letter(claim, claim.last_error or DIED_WHILE_HANDLING, max_attempts)
            log.error("handler_dead_lettered", attempts=max_attempts, error=claim.last_error)
            return
        try:
            async with self.db.system(trace_id=event.trace_id) as uow:
                exc = await _run_handler(uow, spec, event)
                key = {"event_id": event.id, "handler": spec.name, "token": claim.token}
                if exc is None:
                    if (await uow.session.execute(_MARK_DONE, key)).rowcount == 0:  # type: ignore[attr-defined]
                        raise LeaseLost
                else:
                    failed = _failure(self.db, spec, claim.attempt, exc, event) | {"token": claim.token}
                    if (await uow.session.execute(_MARK_FAILED, failed)).rowcount == 0:  # type: ignore[attr-defined]
                        raise LeaseLost
                    await uow.session.execute(_NOTIFY_RELEASED)
        except LeaseLost:
            # Another process took the delivery after our lease ran out; its run is the one
            # that counts, so ours (already rolled back) is abandoned.
            log.warning("handler_lease_lost", attempt=claim.attempt)

    async def _dead_letter(self, claim: _Claim, error: str, attempts: int) -> None:
        async with self.db.system() as uow:
            await uow.session.execute(
                _MARK_FAILED,
                {
                    "event_id": claim.event.id,
                    "handler": claim.handler,
                    "token": claim.token,
                    "attempts": attempts,
                    "error": error,
                    "status": "dead",
                    "delay": 0,
                },
            )

    async def deliver_due(self) -> int:
        """Run every due delivery with a few concurrent workers; returns how many ran."""
        count = 0

        async def worker() -> None:
            nonlocal count
            while await self.deliver_one():
                count += 1

        await asyncio.gather(*(worker() for _ in range(self.workers)))
        return count

    async def renew_leases(self) -> None:
        """Extend the leases of the work this relay is still doing (a live process keeps its
        claims; a frozen one cannot, and loses them when they run out)."""
        params = {"lease": self.lease_seconds}
        deliveries, batches = list(self._held_deliveries), list(self._held_batches)
        if not deliveries and not batches:
            return
        async with self.db.system() as uow:
            if deliveries:
                await uow.session.execute(_RENEW_DELIVERIES, params | {"tokens": deliveries})
            if batches:
                await uow.session.execute(_RENEW_OUTBOX, params | {"tokens": batches})

    async def seconds_until_due(self) -> float | None:
        """How long until the next pending row comes due (None: nothing pending)."""
        async with self.db.system() as uow:
            value = (await uow.session.execute(_NEXT_DUE)).scalar_one_or_none()
        return None if value is None else max(0.0, float(value))

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
        """The long-running loop: woken by NOTIFY, or when the next retry or lease comes due,
        polling as a fallback. Schedules and lease renewal run beside it, so a long job or a
        slow handler never delays delivery."""
        tasks = [asyncio.create_task(self._listen(stop)), asyncio.create_task(self._renew_loop(stop))]
        if self.sink is None:
            tasks.append(asyncio.create_task(self._schedule_loop(stop)))
        poll = self.db.settings.relay_poll_seconds
        try:
            while not stop.is_set():
                wait = poll
                try:
                    await self.drain()
                    due = await self.seconds_until_due()
                    if due is not None:
                        wait = min(poll, max(due, 0.05))
                except Exception:
                    log.exception("relay_iteration_failed")
                self._wake.clear()
                await _first_of(self._wake, stop, seconds=wait)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _renew_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _first_of(stop, seconds=self.lease_seconds / 3)
            try:
                await self.renew_leases()
            except Exception:
                log.exception("relay_lease_renewal_failed")

    async def _schedule_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.tick_schedules()
            except Exception:
                log.exception("relay_schedules_failed")
            await _first_of(stop, seconds=1.0)

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


async def _first_of(*events: asyncio.Event, seconds: float) -> None:
    """Wait until any of the events is set, or `seconds` pass."""
    waiters = [asyncio.create_task(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def run_schedule(db: Database, spec: ScheduleSpec, fire_at: dt.datetime) -> bool:
    """Run a scheduled handler for one fire time unless another process already claimed it.
    The claim commits on its own first, so nobody waits on the job; the job then runs in its
    own transaction. Returns True when this process ran it and it succeeded."""
    with trace(None, schedule=spec.name, fire_at=fire_at.isoformat()):
        key = {"name": spec.name, "fire_at": fire_at}
        try:
            async with db.system() as uow:
                claimed = (
                    await uow.session.execute(_INSERT_SCHEDULE_RUN, key | {"me": process_id()})
                ).one_or_none()
        except Exception:
            log.exception("schedule_claim_failed")
            return False
        if claimed is None:
            return False
        try:
            async with db.system() as uow:
                await spec.fn(ScheduledRun(spec.name, fire_at), uow)
                await uow.session.execute(_FINISH_SCHEDULE_RUN, key | {"error": None})
        except Exception as exc:
            log.exception("schedule_failed")
            try:
                async with db.system() as uow:
                    await uow.session.execute(_FINISH_SCHEDULE_RUN, key | {"error": _error_text(exc)})
            except Exception:
                log.exception("schedule_outcome_not_recorded")
            return False
        log.debug("schedule_ran")  # every minute per schedule: the schedule_runs table keeps them
        return True


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
