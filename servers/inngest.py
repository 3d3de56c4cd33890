"""The Inngest door: core handlers served as Inngest functions at /api/inngest, and the sink
the relay publishes to when Inngest is configured (outbox id = event id, so resends dedupe)."""

from __future__ import annotations

import datetime as dt
import functools
import re
from collections.abc import Sequence

import inngest
import inngest.fast_api
from fastapi import FastAPI

from core.config import Settings
from core.events import HandlerSpec, Registry, ScheduleSpec, load_handlers, run_handler_once, run_schedule
from core.observability import get_logger
from core.outbox import Event, event_uuid
from core.uow import Database

log = get_logger("atlilith.inngest")
SERVE_PATH = "/api/inngest"


def make_client(settings: Settings) -> inngest.Inngest:
    return inngest.Inngest(
        app_id=settings.inngest_app_id,
        # Production mode verifies request signatures and needs INNGEST_SIGNING_KEY; dev mode
        # (INNGEST_DEV) is for local servers and tests only.
        is_production=not settings.inngest_dev,
        event_key=settings.inngest_event_key or ("dev" if settings.inngest_dev else None),
        signing_key=settings.inngest_signing_key,
        api_base_url=settings.inngest_base_url,
        event_api_base_url=settings.inngest_event_api_base_url,
    )


# The key under which a published event carries its emitting span's W3C traceparent.
TRACEPARENT = "traceparent"


class InngestSink:
    """Publishes outbox events to Inngest's event API."""

    def __init__(self, client: inngest.Inngest) -> None:
        self.client = client

    async def publish(self, events: Sequence[Event]) -> None:
        await self.client.send(
            [
                inngest.Event(
                    id=str(e.id),
                    name=e.name,
                    # The emitting span rides along, so the function's span continues it.
                    data={**e.data, TRACEPARENT: e.traceparent} if e.traceparent else e.data,
                    ts=int(e.ts.timestamp() * 1000),
                )
                for e in events
            ]
        )


def fn_id(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def _event_from(ctx: inngest.Context) -> Event:
    raw = ctx.event
    data = dict(raw.data or {})
    carried = data.pop(TRACEPARENT, None)
    ts = dt.datetime.fromtimestamp((raw.ts or 0) / 1000, dt.UTC) if raw.ts else dt.datetime.now(dt.UTC)
    traceparent = carried if isinstance(carried, str) else None
    return Event(
        id=event_uuid(raw.id, raw.name, data), name=raw.name, data=data, ts=ts, traceparent=traceparent
    )


def handler_function(client: inngest.Inngest, db: Database, spec: HandlerSpec) -> inngest.Function[bool]:
    max_attempts = spec.max_attempts or db.settings.handler_max_attempts

    @client.create_function(
        fn_id=fn_id(spec.name),
        name=spec.name,
        trigger=[inngest.TriggerEvent(event=p) for p in spec.patterns],
        # One tenant's burst cannot starve the others.
        concurrency=[inngest.Concurrency(limit=5, key="event.data.tenant_id")],
        retries=max(0, min(20, max_attempts - 1)),
    )
    async def run(ctx: inngest.Context) -> bool:
        event = _event_from(ctx)
        # The delivery record makes a replayed run a no-op, as in the in-process relay.
        return await ctx.step.run("handle", functools.partial(run_handler_once, db, spec, event))

    return run


def schedule_function(client: inngest.Inngest, db: Database, spec: ScheduleSpec) -> inngest.Function[bool]:
    @client.create_function(
        fn_id=fn_id(spec.name),
        name=spec.name,
        trigger=inngest.TriggerCron(cron=spec.cron),
        retries=2,
    )
    async def run(ctx: inngest.Context) -> bool:
        fire_at = _event_from(ctx).ts.replace(second=0, microsecond=0)
        return await ctx.step.run("run", functools.partial(run_schedule, db, spec, fire_at))

    return run


def functions(
    client: inngest.Inngest, db: Database, registry: Registry | None = None
) -> list[inngest.Function[bool]]:
    reg = registry or load_handlers()
    fns = [handler_function(client, db, h) for h in sorted(reg.handlers.values(), key=lambda h: h.name)]
    fns += [schedule_function(client, db, s) for s in sorted(reg.schedules.values(), key=lambda s: s.name)]
    return fns


def mount(app: FastAPI, db: Database, client: inngest.Inngest) -> None:
    inngest.fast_api.serve(app, client, functions(client, db), serve_path=SERVE_PATH)
    log.info("inngest_served", path=SERVE_PATH, production=not db.settings.inngest_dev)
