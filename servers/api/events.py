"""/v1/events/stream: the context's live events as Server-Sent Events (the portal's inbox).

Authenticated like every route (bearer header; a browser reads it with `fetch`, never with a
token in the URL). Each connection lasts `ATLILITH_EVENTS_STREAM_SECONDS`, re-checking the
credential and membership at every poll, then ends with `event: end`; the client reconnects
with `after` (or `Last-Event-ID`) and misses nothing still in the outbox.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Header, Query, Request
from fastapi.sse import EventSourceResponse, format_sse_event

from core import eventfeed
from core.config import Settings
from core.errors import DomainError
from servers.api.deps import Caller, CallerDep, FeatureRouter

router = FeatureRouter(tags=["events"])

PING_EVERY_SECONDS = 15.0
_STREAM_DOC = (
    "`text/event-stream`. First `event: ready` (data `{cursor}`), then one event per outbox "
    "event: `event:` its name (e.g. `messaging/message.received`), `id:` its seq, data the JSON "
    "`{seq, id, name, data, at}` (ids only, never message text). Comment pings keep proxies "
    "open. Ends with `event: end` (data `{cursor}`) after the connection's lifetime, or "
    "`event: error` (data `{code, message, hint}`) when the credential stops being valid."
)


@router.get(
    "/v1/events/stream",
    response_model=None,
    responses={200: {"description": _STREAM_DOC, "content": {"text/event-stream": {}}}},
)
async def stream_events(
    request: Request,
    caller: CallerDep,
    kind: Annotated[
        list[str] | None,
        Query(
            max_length=10,
            description="Event kinds to receive (default all streamable): "
            + ", ".join(f"`{k}`" for k in eventfeed.STREAMABLE),
        ),
    ] = None,
    after: Annotated[
        int | None, Query(ge=0, description="Continue after this cursor (default: from now).")
    ] = None,
    last_event_id: Annotated[str | None, Header(max_length=20)] = None,
) -> EventSourceResponse:
    """The current context's events, live: new inbound messages, drafts and thread changes.
    Only events of this context (the org, or the person when personal) ever appear."""
    if after is None and last_event_id and last_event_id.isdigit():
        after = int(last_event_id)
    async with caller.context() as (ctx, uow):
        kinds = eventfeed.resolve_kinds(ctx, kind)
        start = after if after is not None else await eventfeed.latest_seq(ctx, uow)
    return EventSourceResponse(_frames(caller, request.app.state.settings, kinds, start))


async def _frames(caller: Caller, settings: Settings, kinds: list[str], cursor: int) -> AsyncIterator[bytes]:
    loop = asyncio.get_running_loop()
    yield format_sse_event(event="ready", data_str=json.dumps({"cursor": cursor}), id=str(cursor))
    deadline = loop.time() + settings.events_stream_seconds
    last_write = loop.time()
    while loop.time() < deadline:
        try:
            async with caller.context() as (ctx, uow):
                batch = await eventfeed.read_events(ctx, uow, cursor, kinds)
        except DomainError as err:
            yield format_sse_event(event="error", data_str=json.dumps(err.as_dict()))
            return
        for e in batch.events:
            yield format_sse_event(event=e.name, id=str(e.seq), data_str=e.model_dump_json())
            last_write = loop.time()
        cursor = batch.cursor
        if loop.time() - last_write >= PING_EVERY_SECONDS:
            yield format_sse_event(comment="ping")
            last_write = loop.time()
        await asyncio.sleep(min(settings.events_stream_poll_seconds, max(0.0, deadline - loop.time())))
    yield format_sse_event(event="end", data_str=json.dumps({"cursor": cursor}), id=str(cursor))
