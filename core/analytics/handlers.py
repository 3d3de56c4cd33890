"""Analytics listening to every feature, and its housekeeping.

- `record_domain_event`: each mapped domain event (see mapping.py) becomes an analytics event
  of the event's tenant, member and time. Its id is the outbox event id, so a redelivery or a
  replay through Inngest is a duplicate, never a second count.
- `purge_deleted_org`: an org's deletion removes its events and rollups.
- `compact_client_sets`: every 10 minutes, the client sets of closed buckets are folded into
  the tenant's client dictionary and its coded sets (ingest appends a text row per batch;
  readers take the union of both either way).
- `keep_partitions_ahead`: daily, the monthly partitions of the backfill window and the months
  ahead exist before any event needs them (ingest also creates a missing one on demand).
"""

from __future__ import annotations

import datetime as dt
import json

from dateutil.relativedelta import relativedelta
from sqlalchemy import text

from core.analytics import partitions, store
from core.analytics.client_sets import compact_client_sets as compact
from core.analytics.mapping import BY_EVENT, derive, subscription_patterns
from core.analytics.parsing import PLATFORM_SOURCE, Row
from core.events import ScheduledRun, schedule, subscribe
from core.observability import get_logger
from core.outbox import Event
from core.uow import UnitOfWork

log = get_logger("atlilith.analytics.handlers")


@subscribe(*subscription_patterns(), name="analytics.record_domain_event")
async def record_domain_event(event: Event, uow: UnitOfWork) -> None:
    mapping = BY_EVENT.get(event.name)
    person = event.person_id
    if mapping is None or person is None:
        return  # not an event analytics counts (e.g. a timer), or no tenant to count it for
    derived = derive(mapping, event.data, event.ts)
    row = Row(
        idx=0,
        id=str(event.id),
        ts=derived.ts,
        name=derived.name,
        client_id=derived.client_id,
        source=PLATFORM_SOURCE,
        properties=json.dumps(derived.properties, ensure_ascii=False, separators=(",", ":")),
    )
    await partitions.ensure_partitions(uow.db, row.ts, row.ts)
    stored = await store.insert(uow, [row], person_id=person, org_id=event.org_id)
    if stored.duplicates:
        log.info("analytics_replay_ignored", event_id=str(event.id), event_name=event.name)


@subscribe("platform/org.deleted", name="analytics.purge_deleted_org")
async def purge_deleted_org(event: Event, uow: UnitOfWork) -> None:
    org = event.org_id
    if org is None:
        return
    tables = ("events", *store.ROLLUP_TABLES)
    for table in (f"analytics.{t}" for t in tables):
        await uow.session.execute(text(f"DELETE FROM {table} WHERE tenant_id = :org"), {"org": org})
    log.info("analytics_org_purged", org_id=str(org))


@schedule("11 2 * * *", name="analytics.keep_partitions_ahead")
async def keep_partitions_ahead(run: ScheduledRun, uow: UnitOfWork) -> None:
    settings = uow.db.settings
    now = dt.datetime.now(dt.UTC)
    start = now - dt.timedelta(days=settings.analytics_backfill_days)
    end = now + relativedelta(months=settings.analytics_partitions_ahead_months)
    await partitions.ensure_partitions(uow.db, start, end)


@schedule("*/10 * * * *", name="analytics.compact_client_sets")
async def compact_client_sets(run: ScheduledRun, uow: UnitOfWork) -> None:
    # A bucket still receiving live traffic is left for a later run: merging it now would only
    # be redone.
    merged = await compact(uow, dt.datetime.now(dt.UTC) - dt.timedelta(minutes=30))
    if merged:
        log.info("analytics_client_sets_compacted", buckets=merged)
