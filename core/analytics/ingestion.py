"""Ingest: events sent for the current context, validated per item, stored once each.

A batch the fast checks accepted (`fastpath`) is inserted by one statement, every column one text;
anything else, or a batch holding an event recorded before, takes the per-item path (`parsing`),
which keeps the good events and says precisely why each bad one was refused.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import json
import uuid
from typing import Any, cast

from core.analytics import fastpath, parsing, partitions, store
from core.analytics.fastpath import RawBatch
from core.analytics.parsing import ItemError, Row
from core.analytics.policy import INGEST
from core.analytics.presenters import context_out
from core.analytics.schemas import IngestErrorOut, IngestOut
from core.config import Settings
from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.idempotency import idempotent_operation
from core.uow import UnitOfWork
from core.utilities import utcnow

# A big batch is tens of milliseconds of CPU: above this many events it is parsed off the event
# loop, so other requests' I/O (another batch's commit, say) goes on meanwhile.
_PARSE_IN_THREAD = 1000


@idempotent_operation("analytics.ingest")
async def ingest(
    ctx: TenantContext,
    uow: UnitOfWork,
    events: list[Any] | RawBatch,
    single: bool = False,
    idempotency_key: str | None = None,
) -> IngestOut:
    """Record events for the current context: a batch of up to `analytics_max_batch`, or one
    (`single`: a bad event is then a 422 instead of an item error). Bad items are reported
    with a reason and the good ones kept; an event recorded before (same id and timestamp) is a
    duplicate, never a second count. Events without an id get one derived from their content
    when they carry a timestamp (so resends match), else a random one."""
    ctx.require(INGEST)
    settings = uow.db.settings
    batch = events if isinstance(events, RawBatch) else None
    items: list[Any] = batch.events if batch is not None else cast(list[Any], events)
    _check_size(items, settings)
    limits = _limits(ctx, settings)
    if batch is not None:
        fast = await _ingest_fast(ctx, uow, batch, limits)
        if fast is not None:
            return fast
    parsed, errors = await _parse(batch, items, limits)
    rows, dup_in_batch = _first_of_each_id(parsed)
    if single and errors:
        e = errors[0]
        # The field named here, not by where a door lists field issues (REST `errors`, MCP `fields`).
        hint = (
            f"fix the event's `{e.field}` and send it again" if e.field else "send the event as a JSON object"
        )
        raise ValidationFailed(
            f"the event was refused: {e.message}",
            code=e.code,
            hint=hint,
            errors=[FieldIssue(e.field or "event", e.message, e.code)],
        )
    stored = store.Stored(0, [])
    if rows:
        await partitions.ensure_partitions(uow.db, min(r.ts for r in rows), max(r.ts for r in rows))
        stored = await store.insert(uow, rows, person_id=ctx.person_id, org_id=ctx.org_id)
    duplicates = sorted(stored.duplicates + dup_in_batch)
    return IngestOut(
        context=context_out(ctx),
        accepted=stored.accepted,
        duplicates=len(duplicates),
        rejected=len(errors),
        errors=[
            IngestErrorOut(index=e.index, id=e.id, code=e.code, message=e.message, field=e.field)
            for e in errors
        ],
        duplicate_indexes=duplicates,
        id=uuid.UUID(rows[0].id) if single and rows else None,
    )


def _check_size(items: list[Any], settings: Settings) -> None:
    if not items:
        raise ValidationFailed(
            "no events in the request",
            code="empty_batch",
            hint="send one event object, or {'events': [...]} with 1 to 10,000 events",
        )
    if len(items) > settings.analytics_max_batch:
        raise ValidationFailed(
            f"{len(items)} events in one request; the limit is {settings.analytics_max_batch}",
            code="batch_too_large",
            hint="split the batch",
            extra={"limit": settings.analytics_max_batch},
        )


def _limits(ctx: TenantContext, settings: Settings) -> parsing.Limits:
    now = utcnow()
    return parsing.Limits(
        now=now,
        oldest=now - dt.timedelta(days=settings.analytics_backfill_days),
        newest=now + dt.timedelta(seconds=settings.analytics_max_future_seconds),
        max_props=settings.analytics_max_properties_bytes,
        default_source="api" if ctx.principal.api_key_id else "app",
    )


async def _ingest_fast(
    ctx: TenantContext, uow: UnitOfWork, batch: RawBatch, limits: parsing.Limits
) -> IngestOut | None:
    """The whole batch in one statement, or None when the per-item path must decide (an event
    out of bounds, or an event recorded before)."""
    prepare = functools.partial(
        fastpath.fast_batch,
        batch,
        now=limits.now,
        oldest=limits.oldest,
        newest=limits.newest,
        max_props=limits.max_props,
    )
    # Off the event loop when big, as the parse is: the other batches' statements and commits
    # go on meanwhile.
    fast = await asyncio.to_thread(prepare) if len(batch.events) > _PARSE_IN_THREAD else prepare()
    if fast is None:
        return None
    await partitions.ensure_partitions(uow.db, fast.start, fast.end)
    accepted = await store.insert_fast(
        uow, fast, source=limits.default_source, person_id=ctx.person_id, org_id=ctx.org_id
    )
    if accepted is None:
        return None
    return IngestOut(
        context=context_out(ctx),
        accepted=accepted,
        duplicates=0,
        rejected=0,
        errors=[],
        duplicate_indexes=[],
        id=None,
    )


async def _parse(
    batch: RawBatch | None, items: list[Any], limits: parsing.Limits
) -> tuple[list[Row], list[ItemError]]:
    def parse() -> tuple[list[Row], list[ItemError]]:
        if batch is not None:
            # One event needs a precise reason (or was sent before): the per-item path,
            # reading the body as sent.
            return parsing.parse_items(json.loads(batch.body)["events"], limits)
        return parsing.parse_items(items, limits)

    return await asyncio.to_thread(parse) if len(items) > _PARSE_IN_THREAD else parse()


def _first_of_each_id(parsed: list[Row]) -> tuple[list[Row], list[int]]:
    """The rows to store (the first of each id) and the batch indexes of the repeats."""
    rows: list[Row] = []
    dup_in_batch: list[int] = []
    seen: set[str] = set()
    for row in parsed:
        if row.id in seen:
            dup_in_batch.append(row.idx)
        else:
            seen.add(row.id)
            rows.append(row)
    return rows, dup_in_batch
