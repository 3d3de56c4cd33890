"""/v1/analytics: ingest events, trends, funnel, summary, and the raw event list."""

from __future__ import annotations

import asyncio
import email.message
import json
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError

from core import analytics
from core.analytics import schemas
from core.analytics.fastpath import RawBatch, validate_batch
from core.analytics.timebuckets import Period
from core.errors import ValidationFailed
from core.pagination import Page
from servers.api.deps import CallerDep, FeatureRouter, IdempotencyKey, PageDep

router = FeatureRouter(tags=["analytics"])

_EVENT_DOC = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "id": {
            "type": "string",
            "description": "Your id for the event (a UUID is best): resends with the same timestamp dedupe.",
        },
        "name": {"type": "string", "description": "e.g. page_view; `/` is reserved for platform events."},
        "timestamp": {"type": "string", "format": "date-time", "description": "With an offset; default now."},
        "client_id": {"type": "string", "description": "Who did it: a client id or your visitor id."},
        "properties": {"type": "object", "description": "JSON object, up to 8 KiB encoded."},
        "source": {"type": "string", "description": "e.g. web, ios, cocotte.maison; default api/app."},
    },
}
_INGEST_BODY = {
    "requestBody": {
        "description": "One event, or {'events': [...]} (up to 10,000).",
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "oneOf": [
                        _EVENT_DOC,
                        {
                            "type": "object",
                            "required": ["events"],
                            "properties": {
                                "events": {"type": "array", "items": _EVENT_DOC, "maxItems": 10000}
                            },
                        },
                    ]
                },
                "example": {
                    "events": [
                        {
                            "id": "2f1c7e8e-8a0e-4d4c-9a57-7d3c1b2a9f10",
                            "name": "page_view",
                            "timestamp": "2026-11-22T10:00:00Z",
                            "client_id": "visitor-42",
                            "properties": {"path": "/pricing"},
                            "source": "web",
                        }
                    ]
                },
            }
        },
    }
}


def _is_json(content_type: str | None) -> bool:
    # FastAPI's own rule (strict content type): no header, no JSON.
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


async def _ingest_body(request: Request) -> Any:
    """The body, read here rather than by FastAPI: a batch the fast checks accept is never
    decoded into dicts first (validate_batch). Anything else is decoded as
    FastAPI would, with the same 422 for a missing body or malformed JSON, and the same 415
    for a body not sent as JSON."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _is_json(request.headers.get("content-type")):
        # What FastAPI raises for another route's body sent as something else: the problem
        # handler tells it apart by the header and answers 415 (servers/problems.py).
        raise RequestValidationError(
            [
                {
                    "type": "dict_type",
                    "loc": ("body",),
                    "msg": "Input should be a valid dictionary",
                    "input": None,
                }
            ]
        )
    if raw.lstrip()[:1] == b"{":
        # ~10 ms of CPU for 10,000 events: off the event loop, as the parse is.
        batch = await asyncio.to_thread(validate_batch, raw) if len(raw) > 100_000 else validate_batch(raw)
        if batch is not None:
            return batch
    try:
        return json.loads(raw)
    except json.JSONDecodeError as e:
        raise RequestValidationError(
            [
                {
                    "type": "json_invalid",
                    "loc": ("body", e.pos),
                    "msg": "JSON decode error",
                    "input": {},
                    "ctx": {"error": e.msg},
                }
            ],
            body=e.doc,
        ) from None
    except Exception as e:  # e.g. bytes that are no Unicode text: as FastAPI answers them
        raise HTTPException(status_code=400, detail="There was an error parsing the body") from e


def _events_of(body: Any) -> tuple[list[Any] | RawBatch, bool]:
    if isinstance(body, RawBatch):
        return body, False
    if isinstance(body, dict) and "events" in body:
        if set(body) != {"events"} or not isinstance(body["events"], list):
            raise ValidationFailed(
                "a batch is {'events': [...]} and nothing else",
                code="invalid_batch",
                hint="send one event object, or {'events': [event, ...]}",
            )
        return body["events"], False
    if isinstance(body, list):
        return body, False
    return [body], True


@router.post("/v1/analytics/events", response_model=schemas.IngestOut, openapi_extra=_INGEST_BODY)
async def ingest(
    caller: CallerDep,
    body: Annotated[Any, Depends(_ingest_body)],
    idempotency_key: IdempotencyKey = None,
) -> schemas.IngestOut:
    """Record one event or a batch in the current context. Bad events are reported per item
    (`errors`) and the good ones kept; an event sent before (same id and timestamp) is a
    duplicate, never counted twice.
    Session tokens and API keys with the scope `analytics:ingest`."""
    events, single = _events_of(body)
    return await caller.call(analytics.ingest, events, single, idempotency_key=idempotency_key)


@router.get("/v1/analytics/events", response_model=Page[schemas.EventOut])
async def list_events(
    caller: CallerDep,
    page: PageDep,
    name: Annotated[str | None, Query(max_length=100)] = None,
    client_id: Annotated[str | None, Query(max_length=128)] = None,
    period: Annotated[Period | None, Query()] = None,
    start: Annotated[str | None, Query(max_length=40)] = None,
    end: Annotated[str | None, Query(max_length=40)] = None,
    time_zone: Annotated[str, Query(max_length=64)] = "UTC",
) -> Page[schemas.EventOut]:
    """Raw events of the current context, newest first (default: the last 7 days)."""
    q = schemas.RangeIn(period=period, start=start, end=end, time_zone=time_zone)
    return await caller.call(analytics.list_events, page, name, client_id, q)


@router.post("/v1/analytics/trends", response_model=schemas.TrendsOut)
async def trends(data: schemas.TrendsIn, caller: CallerDep) -> schemas.TrendsOut:
    """Events or unique clients per hour/day/week/month in a time zone, with filters, a
    breakdown (top N + other) and the previous period. Read-only."""
    return await caller.call(analytics.trends, data)


@router.post("/v1/analytics/funnel", response_model=schemas.FunnelOut)
async def funnel(data: schemas.FunnelIn, caller: CallerDep) -> schemas.FunnelOut:
    """2-5 steps per client within a conversion window: counts, conversion, median time. Read-only."""
    return await caller.call(analytics.funnel, data)


@router.get("/v1/analytics/summary", response_model=schemas.SummaryOut)
async def summary(
    caller: CallerDep,
    period: Annotated[Period | None, Query()] = None,
    start: Annotated[str | None, Query(max_length=40)] = None,
    end: Annotated[str | None, Query(max_length=40)] = None,
    time_zone: Annotated[str, Query(max_length=64)] = "UTC",
) -> schemas.SummaryOut:
    """The business dashboard of the current context: bookings, revenue, messages, first
    response, busiest hours (per member for an org's owners and admins)."""
    q = schemas.RangeIn(period=period, start=start, end=end, time_zone=time_zone)
    return await caller.call(analytics.summary, q)
