"""Prometheus metrics: what each process counts as it works (requests, tool calls, handler runs,
rate-limit refusals) and what the database says at scrape time (outbox lag, dead letters, jobs,
credits held), each named `atlilith_*`.

Counters and histograms are per process: Prometheus scrapes every process and sums them. The
database gauges describe the whole installation, so every process reports the same value; a
dashboard takes `max` of them across instances, never `sum` (docs/observability.md)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from sqlalchemy import text

from core import __version__
from core.observability import get_logger

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from core.uow import Database

__all__ = [
    "HANDLER_DURATION",
    "HTTP_DURATION",
    "HTTP_REQUESTS",
    "OUTBOX_RELAYED",
    "PUBLISH_FAILURES",
    "RATE_LIMIT_REFUSALS",
    "REGISTRY",
    "TOOL_CALLS",
    "TOOL_DURATION",
    "DatabaseGauges",
    "Exposition",
    "ThreadedExposition",
]

# Our own registry, so a scrape shows only what this module declares (and the process
# collectors added below), whatever else the process imports.
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_cpu_seconds_total, process_resident_memory_bytes, ...
log = get_logger("atlilith.metrics")

HTTP_REQUESTS = Counter(
    "atlilith_http_requests",
    "HTTP requests answered, by method, route template (never the raw path) and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "atlilith_http_request_duration_seconds",
    "Time from the request's arrival to the end of its answer, by method and route template.",
    ["method", "route"],
    registry=REGISTRY,
)
TOOL_CALLS = Counter(
    "atlilith_mcp_tool_calls",
    "MCP tool calls, by tool and outcome (ok, error, invalid_arguments, failed).",
    ["tool", "outcome"],
    registry=REGISTRY,
)
TOOL_DURATION = Histogram(
    "atlilith_mcp_tool_duration_seconds", "MCP tool call duration, by tool.", ["tool"], registry=REGISTRY
)
HANDLER_DURATION = Histogram(
    "atlilith_handler_duration_seconds",
    "Event handler run time, by handler and outcome (ok, error).",
    ["handler", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
    registry=REGISTRY,
)
RATE_LIMIT_REFUSALS = Counter(
    "atlilith_rate_limit_refusals",
    "Requests refused by a rate limit, by policy (credential, ip, signin, target).",
    ["policy"],
    registry=REGISTRY,
)
OUTBOX_RELAYED = Counter(
    "atlilith_outbox_relayed",
    "Outbox events moved on by this process's relay: dispatched to in-process handlers or "
    "published to Inngest.",
    ["mode"],
    registry=REGISTRY,
)
PUBLISH_FAILURES = Counter(
    "atlilith_relay_publish_failures",
    "Outbox batches the relay failed to publish to Inngest (retried with backoff).",
    registry=REGISTRY,
)
BUILD = Gauge("atlilith_build_info", "The running version.", ["version"], registry=REGISTRY)
BUILD.labels(version=__version__).set(1)
# Series that exist from the start, at 0, so a rate() over them is defined before the first event.
for _mode in ("dispatched", "published"):
    OUTBOX_RELAYED.labels(mode=_mode)
for _policy in ("credential", "ip", "signin", "target"):
    RATE_LIMIT_REFUSALS.labels(policy=_policy)

JOB_STATES = ("queued", "running", "succeeded", "failed", "cancelled")
EXECUTORS = ("builtin", "peer")

# Each query reads a partial index or a table with one row per tenant; the statement timeout
# bounds a scrape even if that stops being true, and the cache bounds how often they run.
_STATEMENT_TIMEOUT = text("SELECT set_config('statement_timeout', '2000', true)")
_OUTBOX = text(
    "SELECT count(*) AS pending, EXTRACT(EPOCH FROM now() - min(created_at)) AS oldest"
    " FROM platform.outbox WHERE status = 'pending'"
)
_DELIVERIES = text(
    "SELECT count(*) FILTER (WHERE status = 'pending') AS pending,"
    " count(*) FILTER (WHERE status = 'dead') AS dead,"
    " EXTRACT(EPOCH FROM now() - min(next_attempt_at) FILTER (WHERE status = 'pending')) AS oldest_due"
    " FROM platform.event_deliveries WHERE status IN ('pending', 'dead')"
)
_JOBS = text("SELECT status, executor, count(*) AS n FROM billing.jobs GROUP BY status, executor")
_CREDITS = text(
    "SELECT COALESCE(sum(held), 0) AS held, COALESCE(sum(balance), 0) AS balance FROM billing.accounts"
)


@dataclass
class Snapshot:
    """What the database said at `taken` (monotonic seconds); `up` False when it could not say."""

    taken: float = 0.0
    up: bool = False
    outbox_pending: int = 0
    outbox_oldest_seconds: float = 0.0
    deliveries_pending: int = 0
    deliveries_oldest_due_seconds: float = 0.0
    dead_letters: int = 0
    jobs: dict[tuple[str, str], int] = field(default_factory=dict)
    credits_held: int = 0
    credits_balance: int = 0


class DatabaseGauges(Collector):
    """The installation-wide gauges, read with a few cheap queries at most once per
    `max_age` seconds however often (or however many callers at once) scrape: a scrape is not
    a way to load the database. Also the database pools of this process, read live."""

    def __init__(self, db: Database, *, max_age: float = 5.0, timeout: float = 3.0) -> None:
        self.db = db
        self.max_age = max_age
        self.timeout = timeout
        self.snapshot = Snapshot()
        self._lock = asyncio.Lock()

    def expire(self) -> None:
        """The next read goes to the database (after a change an operator wants to see now)."""
        self.snapshot = Snapshot(taken=-self.max_age, up=self.snapshot.up)

    async def refresh(self) -> Snapshot:
        """The snapshot, re-read when older than `max_age` (one reader at a time)."""
        async with self._lock:
            if time.monotonic() - self.snapshot.taken >= self.max_age:
                try:
                    async with asyncio.timeout(self.timeout):
                        self.snapshot = await self._read()
                except Exception as exc:
                    log.warning("metrics_database_unreadable", error=type(exc).__name__)
                    self.snapshot = Snapshot(taken=time.monotonic(), up=False)
            return self.snapshot

    async def _read(self) -> Snapshot:
        async with self.db.system() as uow:
            run = uow.session.execute
            await run(_STATEMENT_TIMEOUT)
            outbox = (await run(_OUTBOX)).one()
            deliveries = (await run(_DELIVERIES)).one()
            jobs = {(r.status, r.executor): int(r.n) for r in (await run(_JOBS)).all()}
            credits = (await run(_CREDITS)).one()
        return Snapshot(
            taken=time.monotonic(),
            up=True,
            outbox_pending=int(outbox.pending),
            outbox_oldest_seconds=float(outbox.oldest or 0.0),
            deliveries_pending=int(deliveries.pending),
            deliveries_oldest_due_seconds=max(0.0, float(deliveries.oldest_due or 0.0)),
            dead_letters=int(deliveries.dead),
            jobs=jobs,
            credits_held=int(credits.held),
            credits_balance=int(credits.balance),
        )

    def collect(self) -> Iterator[Metric]:
        s = self.snapshot
        yield _gauge("atlilith_metrics_database_up", "1 when the database gauges below could be read.", s.up)
        if s.up:
            yield from _snapshot_gauges(s)
        pools = GaugeMetricFamily(
            "atlilith_db_pool_checked_out",
            "Database connections of this process in use, by pool.",
            labels=["pool"],
        )
        sizes = GaugeMetricFamily("atlilith_db_pool_size", "Configured size of each pool.", labels=["pool"])
        for name, engine in (("app", self.db.engine), ("system", self.db.system_engine)):
            pool = engine.pool
            pools.add_metric([name], float(getattr(pool, "checkedout", lambda: 0)()))
            sizes.add_metric([name], float(getattr(pool, "size", lambda: 0)()))
        yield pools
        yield sizes


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def _snapshot_gauges(s: Snapshot) -> Iterator[Metric]:
    yield _gauge("atlilith_outbox_pending", "Outbox events not yet relayed.", s.outbox_pending)
    yield _gauge(
        "atlilith_outbox_oldest_pending_age_seconds",
        "Age of the oldest outbox event not yet relayed (0 when none): the relay's lag.",
        s.outbox_oldest_seconds,
    )
    yield _gauge("atlilith_deliveries_pending", "Deliveries waiting or retrying.", s.deliveries_pending)
    yield _gauge(
        "atlilith_deliveries_oldest_due_age_seconds",
        "How long the most overdue pending delivery has been due (0 when none).",
        s.deliveries_oldest_due_seconds,
    )
    yield _gauge("atlilith_dead_letters", "Deliveries given up on (redrive them).", s.dead_letters)
    jobs = GaugeMetricFamily("atlilith_jobs", "Jobs by state and executor.", labels=["state", "executor"])
    for state in JOB_STATES:
        for executor in EXECUTORS:
            jobs.add_metric([state, executor], float(s.jobs.get((state, executor), 0)))
    yield jobs
    yield _gauge("atlilith_credits_held", "Credits held by open jobs.", s.credits_held)
    yield _gauge("atlilith_credits_balance", "Credits on all accounts.", s.credits_balance)


class Exposition(CollectorRegistry):
    """What a scrape shows: the process-wide registry and this app's database gauges, which are
    not registered in it (tests build many apps, each with its own database, in one process)."""

    def __init__(self, gauges: DatabaseGauges) -> None:
        super().__init__(auto_describe=False)
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self.gauges.collect()

    async def render(self) -> bytes:
        """The Prometheus text format, the database gauges refreshed first if stale."""
        await self.gauges.refresh()
        return generate_latest(self)


class ThreadedExposition(Exposition):
    """The exposition a scrape on the separate metrics address reads: that server answers from
    its own thread, so it asks the app's event loop to refresh the gauges (bounded in time)."""

    def __init__(self, gauges: DatabaseGauges, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__(gauges)
        self.loop = loop

    def collect(self) -> Iterator[Metric]:
        future = asyncio.run_coroutine_threadsafe(self.gauges.refresh(), self.loop)
        try:
            future.result(timeout=self.gauges.timeout + 1.0)
        except Exception:
            future.cancel()
        yield from super().collect()
