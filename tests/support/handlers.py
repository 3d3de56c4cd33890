"""Probe handlers the event tests drive; registered for every test session."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import defaultdict

from sqlalchemy import text

from core.events import subscribe
from core.outbox import Event
from core.uow import UnitOfWork

calls: dict[str, list[str]] = defaultdict(list)
failures_left: dict[str, int] = {}
# When each run of `tests.side_by_side` started and ended (monotonic seconds), by event id.
runs: dict[str, tuple[float, float]] = {}


@subscribe("test/probe.*", name="tests.record")
async def record(event: Event, uow: UnitOfWork) -> None:
    calls["record"].append(str(event.id))
    # A real write in the handler's tenant-scoped transaction.
    await uow.session.execute(text("SELECT 1"))


@subscribe("test/probe.flaky", name="tests.flaky")
async def flaky(event: Event, uow: UnitOfWork) -> None:
    key = str(event.id)
    calls["flaky"].append(key)
    left = failures_left.get(key, 0)
    # Written on every attempt: what a failed attempt wrote must roll back with it.
    uow.emit("test/echo.flaky", {"of": key})
    await uow.flush_events()
    if left > 0:
        failures_left[key] = left - 1
        raise RuntimeError("flaky handler failed on purpose")


@subscribe("test/probe.poison", name="tests.poison")
async def poison(event: Event, uow: UnitOfWork) -> None:
    calls["poison"].append(str(event.id))
    raise RuntimeError("this handler always fails")


@subscribe("test/probe.bad_sql", name="tests.bad_sql")
async def bad_sql(event: Event, uow: UnitOfWork) -> None:
    """Fails as a bug in a statement would: PostgreSQL refuses a value the event carried."""
    calls["bad_sql"].append(str(event.id))
    await uow.session.execute(text("SELECT CAST(CAST(:v AS text) AS uuid)"), {"v": event.data["secret"]})


@subscribe("test/probe.conflict", name="tests.conflict")
async def conflict(event: Event, uow: UnitOfWork) -> None:
    """Fails as a deadlock would: a real statement aborted with SQLSTATE 40P01."""
    calls["conflict"].append(str(event.id))
    await uow.session.execute(text("DO $$ BEGIN RAISE EXCEPTION 'deadlock' USING ERRCODE = '40P01'; END $$"))


@subscribe("test/probe.crash", name="tests.crash")
async def crash(event: Event, uow: UnitOfWork) -> None:
    """Kills its own process mid-delivery when ATLILITH_TEST_CRASH is set (subprocess tests)."""
    calls["crash"].append(str(event.id))
    if os.environ.get("ATLILITH_TEST_CRASH") == "1":
        os.kill(os.getpid(), signal.SIGKILL)


@subscribe("test/probe.side_by_side", name="tests.side_by_side")
async def side_by_side(event: Event, uow: UnitOfWork) -> None:
    """Takes `seconds` (its runs overlap or not: the test reads when each started and ended)."""
    started = time.monotonic()
    await asyncio.sleep(float(event.data["seconds"]))
    runs[str(event.id)] = (started, time.monotonic())
