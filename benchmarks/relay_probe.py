"""Handlers of the two-process relay scenario (benchmarks/resilience.py), loaded by the relay
processes it starts through ATLILITH_HANDLER_MODULES: one that records which process handled
an event (after an optional sleep, to be caught holding a claim), and one that kills its process."""

from __future__ import annotations

import asyncio
import os

from sqlalchemy import text

from core.events import subscribe
from core.outbox import Event
from core.uow import UnitOfWork

RECORD = "probe/relay.record"
SUICIDE = "probe/relay.suicide"
SUICIDE_ATTEMPTS = 3
TABLE_SQL = (
    "CREATE SCHEMA IF NOT EXISTS relay_probe;"
    " CREATE TABLE IF NOT EXISTS relay_probe.handled (event_id uuid NOT NULL, pid int NOT NULL,"
    " at timestamptz NOT NULL DEFAULT now())"
)


@subscribe(RECORD, name="probe.record")
async def record(event: Event, uow: UnitOfWork) -> None:
    await asyncio.sleep(float(event.data.get("sleep", 0)))
    await uow.session.execute(
        text("INSERT INTO relay_probe.handled (event_id, pid) VALUES (:e, :p)"),
        {"e": event.id, "p": os.getpid()},
    )


@subscribe(SUICIDE, name="probe.suicide", max_attempts=SUICIDE_ATTEMPTS)
async def suicide(event: Event, uow: UnitOfWork) -> None:
    os._exit(17)  # a handler that takes its process down, every time
