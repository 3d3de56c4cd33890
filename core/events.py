"""The event spine's handlers: the registry of `@subscribe` / `@schedule` handlers, running one
handler for one event (or one schedule for one fire time), re-driving dead deliveries and the
platform's own housekeeping.

`UnitOfWork.emit()` writes an outbox row (`core.outbox`) in the transaction that made the change.
The relay (`core.relay`) delivers committed rows — to Inngest when configured (the outbox id is
the event id, so resends deduplicate), otherwise to the registered handlers in-process: at least
once, one delivery per (event, handler), retried with backoff, then dead-lettered, never blocking
other handlers.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import fnmatch
import importlib
import os
import random
import socket
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager as ContextManager
from dataclasses import dataclass, field
from typing import Any

from cronsim import CronSim
from sqlalchemy import func, text, update

from core.db_errors import connection_lost, describe_db_error, transaction_conflict
from core.errors import DomainError
from core.features import import_feature_modules
from core.metrics import HANDLER_DURATION
from core.observability import SpanKind, get_logger, trace
from core.outbox import NOTIFY_CHANNEL, Event, deliveries_table
from core.uow import Database, UnitOfWork

log = get_logger("atlilith.events")

# --- handlers -------------------------------------------------------------------------------------


EventHandler = Callable[[Event, UnitOfWork], Awaitable[None]]
# Several events for one handler in one transaction (see `HandlerSpec.batch`).
BatchHandler = Callable[[Sequence[Event], UnitOfWork], Awaitable[None]]


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
    # The handler's work for several events at once, in one transaction (the relay then commits
    # several deliveries with one commit): it must do for each event what `fn` does, all of it in
    # that transaction (no commit of its own, no call out), starting in system mode. `batches`
    # says which events may join a batch (the others are always delivered one at a time).
    batch: BatchHandler | None = None
    batches: Callable[[Event], bool] | None = None

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
    # The handlers of each event name seen, against the handlers they were matched from (the
    # relay fans out every event: matching every pattern again was ~2 % of its CPU per job).
    _matched: dict[str, list[HandlerSpec]] = field(default_factory=dict, repr=False)
    _matched_from: dict[str, HandlerSpec] = field(default_factory=dict, repr=False)

    def for_event(self, name: str) -> list[HandlerSpec]:
        if self._matched_from != self.handlers:
            self._matched.clear()
            self._matched_from = dict(self.handlers)
        found = self._matched.get(name)
        if found is None:
            found = self._matched[name] = [h for h in self.handlers.values() if h.matches(name)]
        return found


registry = Registry()


def subscribe(
    *patterns: str,
    name: str | None = None,
    max_attempts: int | None = None,
    batch: BatchHandler | None = None,
    batches: Callable[[Event], bool] | None = None,
) -> Callable[[EventHandler], EventHandler]:
    """Register an idempotent handler for events matching the glob patterns
    (e.g. `bookings/booking.*`). The handler runs in a transaction scoped to the event's tenant.
    `batch` (with `batches`, the events it takes): the same work for several events in one
    transaction (`HandlerSpec.batch`)."""

    def decorator(fn: EventHandler) -> EventHandler:
        spec_name = name or f"{fn.__module__}.{fn.__qualname__}"
        registry.handlers[spec_name] = HandlerSpec(
            spec_name, tuple(patterns), fn, max_attempts, batch, batches
        )
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


Sweep = Callable[[UnitOfWork], Awaitable[int]]


def sweep(cron: str, *, name: str, logged_as: str) -> Callable[[Sweep], Sweep]:
    """Register a periodic sweep (see `schedule`): `fn(uow)` returns how many rows it changed,
    logged as `logged_as` when not zero (an idle run writes no line) on the logger of the module
    that declares it (`core.bookings.handlers` logs as `atlilith.bookings.handlers`)."""

    def decorator(fn: Sweep) -> Sweep:
        sweep_log = get_logger("atlilith." + fn.__module__.removeprefix("core."))

        async def run(_: ScheduledRun, uow: UnitOfWork) -> None:
            count = await fn(uow)
            if count:
                sweep_log.info(logged_as, count=count)

        schedule(cron, name=name)(run)
        return fn

    return decorator


def load_handlers(extra_modules: str = "") -> Registry:
    """Import every `core.<feature>.handlers` module so their decorators register, and the
    comma-separated `extra_modules` (`Settings.handler_modules`: plugins, test probes)."""
    for name in filter(None, (m.strip() for m in extra_modules.split(","))):
        importlib.import_module(name)
    import_feature_modules("handlers")
    return registry


# --- running one handler --------------------------------------------------------------------------

HANDLER_TIMEOUT_SECONDS = 60.0


class HandlerFailed(Exception):
    """A handler raised; the delivery was recorded for retry (or dead-lettered)."""


def process_id() -> str:
    """Who holds a claim: host and pid (read at call time, so a forked worker names itself)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_seconds(attempt: int, base: float, cap: float) -> float:
    # Full jitter: retries of many failed deliveries spread out instead of stampeding.
    return float(random.uniform(0, min(cap, base * (2 ** max(0, attempt - 1)))))  # noqa: S311


def error_text(exc: BaseException) -> str:
    """What a failed attempt leaves in `last_error`: a database error by its class, SQLSTATE
    and the objects it names (`core.db_errors.describe_db_error`, never SQL or the data it
    quotes); anything else by its class and message."""
    described = describe_db_error(exc)
    if described is not None:
        return described[:2000]
    return f"{type(exc).__name__}: {exc}"[:2000]


_LOCK_DELIVERY = text(
    "SELECT status, attempts FROM platform.event_deliveries"
    " WHERE event_id = :event_id AND handler = :handler FOR UPDATE"
)
_ENSURE_DELIVERY = text(
    "INSERT INTO platform.event_deliveries (event_id, handler) VALUES (:event_id, :handler)"
    " ON CONFLICT DO NOTHING"
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
NOTIFY_RELEASED = text(f"SELECT pg_notify('{NOTIFY_CHANNEL}', 'released')")


def handler_span(handler: str, event: Event, *, attempt: int | None = None) -> ContextManager[str]:
    """The span of one handler run: a child of the span that emitted the event (its stored
    `traceparent`), in the event's trace, so the request, the outbox and the handler read as
    one trace. Log lines inside carry the handler (component = the handler's feature)."""
    return trace(
        event.trace_id,
        name=f"handle {event.name}",
        traceparent=event.traceparent,
        kind=SpanKind.CONSUMER,
        attributes={"messaging.operation.type": "process", "messaging.message.id": str(event.id)}
        | ({"atlilith.attempt": attempt} if attempt is not None else {}),
        handler=handler,
        event_name=event.name,
        event_id=str(event.id),
        component=handler.split(".", 1)[0],
        action=handler,
    )


async def run_in_savepoint(uow: UnitOfWork, spec: HandlerSpec, event: Event) -> Exception | None:
    """Run the handler in a savepoint scoped to the event's tenant; back in system mode after.
    Returns what it raised (its writes rolled back), or None."""
    started = time.perf_counter()
    try:
        async with uow.session.begin_nested():
            await _run(uow, spec, event)
    except Exception as exc:
        _failed(spec, started)
        uow._events = []
        await uow.act_as_system()
        return exc
    await _succeeded(uow, spec, started)
    return None


async def run_first_in_transaction(uow: UnitOfWork, spec: HandlerSpec, event: Event) -> Exception | None:
    """Run the handler as the first work of `uow`'s transaction (nothing before it to keep, so
    no savepoint: two round trips fewer per delivery), scoped to the event's tenant; back in
    system mode after. If it raises, the whole transaction rolls back (its writes and its
    events) and system mode starts a new one, where the caller records the failure."""
    started = time.perf_counter()
    try:
        await _run(uow, spec, event)
    except Exception as exc:
        _failed(spec, started)
        uow._events = []
        await uow.session.rollback()
        await uow.act_as_system()
        return exc
    await _succeeded(uow, spec, started)
    return None


async def run_batch_first_in_transaction(uow: UnitOfWork, spec: HandlerSpec, events: Sequence[Event]) -> None:
    """Run `spec.batch` for `events` as the first work of `uow`'s transaction (system mode),
    then write their events and return to system mode. Raises what the batch raised: the
    caller rolls the whole transaction back (nothing of any event stands) and delivers each
    event on its own."""
    if spec.batch is None:
        raise ValueError(f"handler {spec.name} has no batch form")
    started = time.perf_counter()
    try:
        async with asyncio.timeout(HANDLER_TIMEOUT_SECONDS):
            await spec.batch(events, uow)
        await uow.flush_events()
    except Exception:
        _failed(spec, started)
        uow._events = []
        raise
    share = (time.perf_counter() - started) / len(events)
    observe = HANDLER_DURATION.labels(handler=spec.name, outcome="ok").observe
    for _ in events:
        observe(share)
    await uow.act_as_system()


async def _run(uow: UnitOfWork, spec: HandlerSpec, event: Event) -> None:
    await uow.act_as_service(event.person_id, event.org_id)
    async with asyncio.timeout(HANDLER_TIMEOUT_SECONDS):
        await spec.fn(event, uow)
    await uow.flush_events()


def _failed(spec: HandlerSpec, started: float) -> None:
    HANDLER_DURATION.labels(handler=spec.name, outcome="error").observe(time.perf_counter() - started)


async def _succeeded(uow: UnitOfWork, spec: HandlerSpec, started: float) -> None:
    HANDLER_DURATION.labels(handler=spec.name, outcome="ok").observe(time.perf_counter() - started)
    await uow.act_as_system()


def failure_outcome(
    db: Database, spec: HandlerSpec, attempt: int, exc: Exception, event: Event
) -> dict[str, Any]:
    """What a failed attempt writes: retry after a backoff, or dead after `max_attempts`."""
    max_attempts = spec.max_attempts or db.settings.handler_max_attempts
    dead = attempt >= max_attempts
    # A deadlock, a serialization failure or a database gone for a moment is retried as any
    # failure, but is not a bug of the handler's: no stack trace for it, the SQLSTATE instead.
    transient = _transient(exc)
    log.warning(
        "handler_failed",
        handler=spec.name,
        event_name=event.name,
        event_id=str(event.id),
        attempt=attempt,
        dead_lettered=dead,
        error=type(exc).__name__,
        **({"transient": transient} if transient else {"exc_info": exc}),
    )
    return {
        "event_id": event.id,
        "handler": spec.name,
        "attempts": attempt,
        "error": error_text(exc),
        "status": "dead" if dead else "pending",
        "delay": backoff_seconds(
            attempt, db.settings.handler_backoff_base_seconds, db.settings.handler_backoff_max_seconds
        ),
    }


def _transient(exc: BaseException) -> str | None:
    """Why a handler's failure is the database's passing state, not the handler's bug: the
    SQLSTATE of a transaction conflict, "connection_lost", or the code of the 503 it became."""
    if isinstance(exc, DomainError):
        return exc.code if exc.code in ("transaction_conflict", "database_unavailable") else None
    if (state := transaction_conflict(exc)) is not None:
        return state
    return "connection_lost" if connection_lost(exc) else None


async def run_handler_once(db: Database, spec: HandlerSpec, event: Event) -> bool:
    """Deliver one event to one handler exactly once in effect (used by the Inngest functions):
    a replay of a delivery already done is a no-op. Raises HandlerFailed so the caller retries."""
    with handler_span(spec.name, event):
        async with db.system(trace_id=event.trace_id) as uow:
            await uow.session.execute(_ENSURE_DELIVERY, {"event_id": event.id, "handler": spec.name})
            row = (
                await uow.session.execute(_LOCK_DELIVERY, {"event_id": event.id, "handler": spec.name})
            ).one()
            if row.status == "done":
                log.info("handler_replay_skipped")
                return False
            exc = await run_in_savepoint(uow, spec, event)
            if exc is None:
                await uow.session.execute(_MARK_DONE_LOCKED, {"event_id": event.id, "handler": spec.name})
            else:
                failed = failure_outcome(db, spec, row.attempts + 1, exc, event)
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
        await uow.session.execute(NOTIFY_RELEASED)
    return ids


# --- schedules ------------------------------------------------------------------------------------

_INSERT_SCHEDULE_RUN = text(
    "INSERT INTO platform.schedule_runs (name, fire_at, claimed_by) VALUES (:name, :fire_at, :me)"
    " ON CONFLICT DO NOTHING RETURNING name"
)
_FINISH_SCHEDULE_RUN = text(
    "UPDATE platform.schedule_runs SET finished_at = now(), last_error = :error"
    " WHERE name = :name AND fire_at = :fire_at"
)


async def run_schedule(db: Database, spec: ScheduleSpec, fire_at: dt.datetime) -> bool:
    """Run a scheduled handler for one fire time unless another process already claimed it.
    The claim commits on its own first, so nobody waits on the job; the job then runs in its
    own transaction. Returns True when this process ran it and it succeeded."""
    with trace(
        name=f"schedule {spec.name}", schedule=spec.name, fire_at=fire_at.isoformat(), action=spec.name
    ):
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
                    await uow.session.execute(_FINISH_SCHEDULE_RUN, key | {"error": error_text(exc)})
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
