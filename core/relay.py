"""The relay: moves committed outbox rows on — published to a sink (Inngest) or fanned out to
in-process deliveries — and runs due deliveries and schedules, under leases so that several
processes can run it at once."""

from __future__ import annotations

import asyncio
import datetime as dt
import enum
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import asyncpg
from cronsim import CronSim
from sqlalchemy import Row, TextClause

from core import relay_sql as sql
from core.db import asyncpg_dsn
from core.events import (
    NOTIFY_RELEASED,
    backoff_seconds,
    error_text,
    failure_outcome,
    handler_span,
    load_handlers,
    process_id,
    run_batch_first_in_transaction,
    run_first_in_transaction,
    run_schedule,
)
from core.metrics import OUTBOX_RELAYED, PUBLISH_FAILURES
from core.observability import SpanKind, get_logger, trace
from core.outbox import NOTIFY_CHANNEL, Event
from core.uow import Database, UnitOfWork, app_database_url

# The logger keeps the name it had before the relay left core.events: log queries filter on it.
log = get_logger("atlilith.events")


class LeaseLost(Exception):
    """The claim on a delivery ran out and another process took it: this run's work is abandoned."""


# --- sinks --------------------------------------------------------------------------------------


class Sink(Protocol):
    """Where the relay publishes committed events when handlers don't run in-process."""

    async def publish(self, events: Sequence[Event]) -> None: ...


# --- the relay ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Claim:
    token: uuid.UUID
    attempt: int
    last_error: str | None
    handler: str
    event: Event


def _claimed(row: Row[Any]) -> _Claim:
    event = Event(row.event_id, row.name, row.data, row.created_at, row.traceparent)
    return _Claim(row.claim_token, row.attempts, row.last_error, row.handler, event)


class _NotChained(enum.Enum):
    NOT_CHAINED = "not chained"


# What a delivery hands its worker: the next claim, None when nothing was due, or NOT_CHAINED.
NOT_CHAINED = _NotChained.NOT_CHAINED
_Chained = _Claim | None | _NotChained
# What a run of claims hands its worker: the next claims (none when nothing was due), or NOT_CHAINED.
_ChainedMany = list[_Claim] | _NotChained


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
        self._listening = asyncio.Event()
        self._next_fire: dict[str, dt.datetime] = {}
        # Claims this relay is working on, renewed by `run` until their outcome is written.
        self._held_deliveries: set[uuid.UUID] = set()
        self._held_batches: set[uuid.UUID] = set()
        # The handlers whose first attempts are claimed (and run) several at a time.
        self._batched = sorted(
            name for name, spec in self.registry.handlers.items() if spec.batch is not None
        )

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
                await uow.session.execute(sql.CLAIM_OUTBOX, {"limit": self.db.settings.relay_batch_size})
            ).all()
            if not rows:
                return 0
            pairs = [(r.id, h.name) for r in rows for h in self.registry.for_event(r.name)]
            if pairs:
                await uow.session.execute(
                    sql.FAN_OUT, {"event_ids": [e for e, _ in pairs], "handlers": [h for _, h in pairs]}
                )
            await uow.session.execute(
                sql.MARK_RELAYED, {"ids": [r.id for r in rows], "status": "dispatched", "token": None}
            )
        OUTBOX_RELAYED.labels(mode="dispatched").inc(len(rows))
        return len(rows)

    async def _publish_batch(self, sink: Sink) -> int:
        settings = self.db.settings
        token = uuid.uuid4()
        async with self.db.system() as uow:
            rows = (
                await uow.session.execute(
                    sql.LEASE_OUTBOX,
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
            events = [Event(r.id, r.name, r.data, r.created_at, r.traceparent) for r in rows]
            try:
                async with asyncio.timeout(settings.relay_publish_timeout_seconds):
                    await sink.publish(events)
            except Exception as exc:
                # Publishing never dead-letters: the outbox keeps events until the sink is back.
                delay = backoff_seconds(max(r.attempts for r in rows), 1.0, 60.0)
                async with self.db.system() as uow:
                    await uow.session.execute(
                        sql.MARK_PUBLISH_FAILED, {"token": token, "error": error_text(exc), "delay": delay}
                    )
                PUBLISH_FAILURES.inc()
                log.warning("publish_failed", count=len(ids), error=type(exc).__name__, retry_in=delay)
                return 0
            async with self.db.system() as uow:
                # Marked even if the lease ran out meanwhile: the sink dedupes on the event id.
                await uow.session.execute(
                    sql.MARK_RELAYED, {"ids": ids, "status": "published", "token": token}
                )
            OUTBOX_RELAYED.labels(mode="published").inc(len(rows))
            return len(rows)
        finally:
            self._held_batches.discard(token)

    async def _claim(self) -> _Claim | None:
        claims = await self._claim_some(1)
        return claims[0] if claims else None

    async def _claim_some(self, limit: int) -> list[_Claim]:
        """Claim up to `limit` due deliveries in a transaction of their own (system mode): each
        claim, its attempt and its lease hold once that commits, before any handler starts."""
        async with self.db.system() as uow:
            rows = (await uow.session.execute(sql.CLAIM_DELIVERIES, self._claim_params(limit))).all()
        claims = [_claimed(row) for row in rows]
        self._held_deliveries.update(c.token for c in claims)
        return claims

    def _claim_params(self, limit: int) -> dict[str, object]:
        return {"me": process_id(), "lease": self.lease_seconds, "limit": limit, "batched": self._batched}

    async def deliver_one(self) -> bool:
        """Claim one due delivery (committed with its attempt counted), run its handler in a
        transaction of its own and record the outcome there if the claim is still ours.
        Returns False when nothing is due."""
        claim = await self._claim()
        if claim is None:
            return False
        await self._deliver(claim)
        return True

    async def _deliver(self, claim: _Claim, *, claim_next: int = 0) -> _ChainedMany:
        """Run a claimed delivery; with `claim_next`, up to that many due ones are claimed in the
        same transaction as this one's outcome (returned once that committed; `NOT_CHAINED` when
        no claim was made)."""
        self._held_deliveries.add(claim.token)
        try:
            with handler_span(claim.handler, claim.event, attempt=claim.attempt):
                following = await self._handle_chain(claim, claim_next)
        finally:
            self._held_deliveries.discard(claim.token)
        return following

    async def _handle(self, claim: _Claim, *, claim_next: bool = False) -> _Chained:
        """One delivery; with `claim_next`, the next one claimed with its outcome (None: nothing
        was due)."""
        following = await self._handle_chain(claim, 1 if claim_next else 0)
        if not isinstance(following, list):
            return following
        return following[0] if following else None

    async def _handle_chain(self, claim: _Claim, claim_next: int) -> _ChainedMany:
        event = claim.event
        spec = self.registry.handlers.get(claim.handler)
        if spec is None:
            await self._dead_letter(claim, "no such handler in this build", claim.attempt)
            log.error("handler_unknown")
            return NOT_CHAINED
        max_attempts = spec.max_attempts or self.db.settings.handler_max_attempts
        if claim.attempt > max_attempts:
            # Every allowed attempt was used and the last one never wrote an outcome: the
            # handler took its process down (or hung it) each time.
            await self._dead_letter(claim, claim.last_error or sql.DIED_WHILE_HANDLING, max_attempts)
            log.error("handler_dead_lettered", attempts=max_attempts, error=claim.last_error)
            return NOT_CHAINED
        try:
            # The handler sets its tenant first thing, and system mode after it.
            async with self.db.system(trace_id=event.trace_id, settings_deferred=True) as uow:
                exc = await run_first_in_transaction(uow, spec, event)
                key = {"event_id": event.id, "handler": spec.name, "token": claim.token}
                if exc is None and claim_next:
                    # Committed with this outcome, as a claim of its own would be before its handler.
                    return await self._done_and_claim(uow, [claim], claim_next)
                if exc is None:
                    if (await uow.session.execute(sql.MARK_DONE, key)).rowcount == 0:  # type: ignore[attr-defined]
                        raise LeaseLost
                else:
                    failed = failure_outcome(self.db, spec, claim.attempt, exc, event) | {
                        "token": claim.token
                    }
                    if (await uow.session.execute(sql.MARK_FAILED, failed)).rowcount == 0:  # type: ignore[attr-defined]
                        raise LeaseLost
                    await uow.session.execute(NOTIFY_RELEASED)
                if not claim_next:
                    return NOT_CHAINED
                # Committed with this outcome, as a claim of its own would be before its handler.
                return await self._claimed_in(uow, claim_next)
        except LeaseLost:
            # Another process took the delivery after our lease ran out; its run is the one
            # that counts, so ours (already rolled back) is abandoned.
            log.warning("handler_lease_lost", attempt=claim.attempt)
            return NOT_CHAINED

    async def _claimed_in(self, uow: UnitOfWork, limit: int) -> list[_Claim]:
        rows = (await uow.session.execute(sql.CLAIM_DELIVERIES, self._claim_params(limit))).all()
        return self._held([_claimed(row) for row in rows])

    def _held(self, claims: list[_Claim]) -> list[_Claim]:
        # Renewed from now on (they are committed once the caller's transaction is).
        self._held_deliveries.update(c.token for c in claims)
        return claims

    async def _done_and_claim(self, uow: UnitOfWork, done: Sequence[_Claim], claim_next: int) -> list[_Claim]:
        """Mark `done` delivered and claim up to `claim_next` more, in `uow`'s transaction;
        LeaseLost (the caller rolls back) if any of them is no longer this run's."""
        params = self._claim_params(claim_next) | {
            "event_ids": [c.event.id for c in done],
            "handlers": [c.handler for c in done],
            "tokens": [c.token for c in done],
        }
        # Without flushing the handlers' pending changes: the statement reads none of their
        # rows, and the commit writes them (a batch of jobs writes its jobs' rows itself there,
        # in its settling statement: flushed here, each would be written twice).
        with uow.session.no_autoflush:
            rows = (await uow.session.execute(sql.DONE_AND_CLAIM, params)).all()
        if rows[0].done != len(done):
            raise LeaseLost
        return self._held([_claimed(row) for row in rows if row.event_id is not None])

    def _batchable(self, claim: _Claim) -> bool:
        """Whether a claim may share a transaction with others of its handler: the handler has
        a batch form that takes this event, and this is the delivery's first attempt (a retry,
        or one whose earlier claim died with its process, runs alone, as it always did)."""
        spec = self.registry.handlers.get(claim.handler)
        return (
            claim.attempt == 1
            and claim.last_error is None
            and spec is not None
            and spec.batch is not None
            and (spec.batches is None or spec.batches(claim.event))
        )

    async def _deliver_claims(self, claims: list[_Claim]) -> _ChainedMany:
        """Run a worker's claims: the largest group of first attempts that one handler takes as
        a batch in one transaction, every other claim on its own; the last transaction also
        claims the worker's next ones."""
        groups: dict[str, list[_Claim]] = {}
        for claim in claims:
            if self._batchable(claim):
                groups.setdefault(claim.handler, []).append(claim)
        batch = max(groups.values(), key=len, default=[])
        if len(batch) < 2:
            batch = []
        alone = [c for c in claims if c not in batch]
        limit = self.db.settings.relay_delivery_batch_size
        for claim in alone if batch else alone[:-1]:
            await self._deliver(claim)
        if batch:
            return await self._deliver_batch(batch, claim_next=limit)
        return await self._deliver(alone[-1], claim_next=limit)

    async def _deliver_batch(self, claims: list[_Claim], *, claim_next: int) -> _ChainedMany:
        """Run several first deliveries of one handler in one transaction (its batch form) and
        mark them all done with one commit, claiming the next ones with it. Each claim committed
        (its attempt counted) before this started, as a claim of its own would have. If the
        batch raises or any lease was lost, nothing of it commits (not one event's work, not
        one outcome) and each delivery then runs on its own, under its claim, exactly as it
        would have without the batch: a failing handler fails alone, the others succeed once."""
        spec = self.registry.handlers[claims[0].handler]
        events = [c.event for c in claims]
        try:
            with trace(
                name=f"handle {events[0].name} x{len(events)}",
                kind=SpanKind.CONSUMER,
                attributes={
                    "messaging.operation.type": "process",
                    "messaging.batch.message_count": len(events),
                },
                handler=spec.name,
                component=spec.name.split(".", 1)[0],
                action=spec.name,
            ):
                async with self.db.system() as uow:
                    await run_batch_first_in_transaction(uow, spec, events)
                    following = await self._done_and_claim(uow, claims, claim_next)
        except Exception as exc:
            log.warning(
                "delivery_batch_undone", handler=spec.name, count=len(claims), error=type(exc).__name__
            )
            for claim in claims:
                await self._deliver(claim)
            return NOT_CHAINED
        self._held_deliveries.difference_update(c.token for c in claims)
        return following

    async def _dead_letter(self, claim: _Claim, error: str, attempts: int) -> None:
        async with self.db.system() as uow:
            await uow.session.execute(
                sql.MARK_FAILED,
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
        """Run every due delivery with a few concurrent workers; returns how many ran. A worker
        that finds nothing due stays while another still claims or works, and claims again when
        the next delivery comes due: what comes due meanwhile (the leases of a relay that froze
        holding several claims, which run out moments apart; a retry's backoff) then runs beside
        that work, not one after another in the busy worker's chain. The pass ends once every
        worker waits."""
        count = 0
        active = self.workers  # claiming or working; a worker counts until it waits
        # Set when the pass is over: every worker waits, or one failed (the others stop once
        # the work in hand is done, and the pass reports the failure).
        over = asyncio.Event()
        limit = self.db.settings.relay_delivery_batch_size

        async def worker() -> None:
            nonlocal count, active
            try:
                claims = await self._claim_some(limit)
                while True:
                    if claims:
                        count += await self._work_through(claims, limit)
                    active -= 1
                    if active == 0:
                        over.set()
                    if not over.is_set():
                        await self._until_delivery_due(over)
                    if over.is_set():
                        return
                    active += 1
                    claims = await self._claim_some(limit)
            except BaseException:
                over.set()
                raise

        await asyncio.gather(*(worker() for _ in range(self.workers)))
        return count

    async def _work_through(self, claims: list[_Claim], limit: int) -> int:
        """Run a worker's claims and those it claims after them until none is due; returns how
        many ran."""
        ran = 0
        following: _ChainedMany = claims
        while isinstance(following, list) and following:
            ran += len(following)
            # The next claims ride on the last commit of these (no transaction of their own);
            # when none could (a lost lease, a dead letter, a batch undone), the worker claims
            # anew.
            following = await self._deliver_claims(following)
            if following is NOT_CHAINED:
                following = await self._claim_some(limit)
        return ran

    async def _until_delivery_due(self, over: asyncio.Event) -> None:
        """An idle worker's wait: until the next pending delivery comes due, or the pass is over."""
        await _first_of(over, seconds=self._sleep_for(await self._seconds_until(sql.NEXT_DELIVERY_DUE)))

    async def renew_leases(self) -> None:
        """Extend the leases of the work this relay is still doing (a live process keeps its
        claims; a frozen one cannot, and loses them when they run out)."""
        params = {"lease": self.lease_seconds}
        deliveries, batches = list(self._held_deliveries), list(self._held_batches)
        if not deliveries and not batches:
            return
        async with self.db.system() as uow:
            if deliveries:
                await uow.session.execute(sql.RENEW_DELIVERIES, params | {"tokens": deliveries})
            if batches:
                await uow.session.execute(sql.RENEW_OUTBOX, params | {"tokens": batches})

    async def seconds_until_due(self) -> float | None:
        """How long until the next pending row comes due (None: nothing pending)."""
        return await self._seconds_until(sql.NEXT_DUE)

    async def _seconds_until(self, statement: TextClause) -> float | None:
        async with self.db.system() as uow:
            value = (await uow.session.execute(statement)).scalar_one_or_none()
        return None if value is None else max(0.0, float(value))

    def _sleep_for(self, due: float | None) -> float:
        """How long to sleep when the next row comes due in `due` seconds: until then, with
        the poll as a fallback, and at least 50 ms, so that rows due but locked elsewhere (a
        claim being committed, a frozen process's open transaction) are not polled back to back."""
        poll = self.db.settings.relay_poll_seconds
        return poll if due is None else min(poll, max(due, 0.05))

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

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """The long-running loop: woken by NOTIFY, or when the next retry or lease comes due,
        polling as a fallback. Schedules and lease renewal run beside it, so a long job or a
        slow handler never delays delivery. `on_ready` is called once the first pass is done:
        a process announcing itself then is one that takes work."""
        tasks = [asyncio.create_task(self._listen(stop)), asyncio.create_task(self._renew_loop(stop))]
        if self.sink is None:
            tasks.append(asyncio.create_task(self._schedule_loop(stop)))
        try:
            while not stop.is_set():
                wait = self._sleep_for(None)
                # Cleared before the pass, not after it: a NOTIFY arriving while the pass runs
                # then wakes the next wait at once instead of being lost until the next poll.
                self._wake.clear()
                try:
                    await self.drain()
                    wait = self._sleep_for(await self.seconds_until_due())
                except Exception:
                    log.exception("relay_iteration_failed")
                if on_ready is not None:
                    # Announced once it hears NOTIFY too (bounded: polling still delivers).
                    await _first_of(self._listening, stop, seconds=10)
                    on_ready()
                    on_ready = None
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
                self._listening.set()
                self._wake.set()  # catch up on anything committed while we were not listening
                await stop.wait()
            except (OSError, asyncpg.PostgresError) as exc:
                self._listening.clear()
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
