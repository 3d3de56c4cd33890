"""/v1/messaging: threads, messages, drafts, read markers, inbound ingest, settings."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from fastapi import Depends, Query, Response, status

from core import messaging
from core.messaging import schemas
from core.messaging.conversation import ClientLinkOut
from core.pagination import Page
from servers.api.deps import CallerDep, FeatureRouter, IdempotencyKey, IfMatch, PageDep, tagged

router = FeatureRouter(prefix="/v1/messaging", tags=["messaging"])

# Service operations deliberately without a route, and why (checked by tests/test_parity.py).
NOT_ROUTES = {
    "messaging.wake_snoozed_threads": "scheduled housekeeping (every minute), not a caller's operation",
}


async def _inbox_filters(
    status_: Annotated[schemas.ThreadStatus | None, Query(alias="status")] = None,
    assignee: Annotated[
        str | None, Query(max_length=40, description="A member's slug, `me` or `none`.")
    ] = None,
    label: Annotated[str | None, Query(max_length=40)] = None,
    client_id: uuid.UUID | None = None,
    channel: Annotated[str | None, Query(max_length=30)] = None,
    unread: Annotated[bool | None, Query(description="true: only threads with unread messages.")] = None,
    q: Annotated[
        str | None,
        Query(min_length=1, max_length=200, description="Words in the subject, messages or client."),
    ] = None,
) -> messaging.ThreadFilter:
    return messaging.ThreadFilter(status_, assignee, label, client_id, channel, unread, q)


InboxFilters = Annotated[messaging.ThreadFilter, Depends(_inbox_filters)]


@router.get("/threads", response_model=Page[schemas.ThreadOut])
async def list_threads(caller: CallerDep, page: PageDep, filters: InboxFilters) -> Page[schemas.ThreadOut]:
    """The inbox of the current context, most recent activity first (keyset pagination)."""
    return await caller.call(messaging.list_threads, page, filters)


@router.get("/threads/counts", response_model=schemas.ThreadCountsOut)
async def count_threads(caller: CallerDep, filters: InboxFilters) -> schemas.ThreadCountsOut:
    """The inbox under the same filters as `GET /threads`, counted exactly: threads, threads
    with unread messages, unread messages."""
    return await caller.call(messaging.count_threads, filters)


@router.post("/threads", status_code=status.HTTP_201_CREATED, response_model=schemas.ThreadDetailOut)
async def create_thread(
    data: schemas.ThreadIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> schemas.ThreadDetailOut:
    """Start a conversation with a client, optionally with a first message."""
    return await caller.call(messaging.create_thread, data, idempotency_key=idempotency_key)


@router.get("/threads/{thread_id}", response_model=schemas.ThreadDetailOut)
async def get_thread(
    thread_id: uuid.UUID, caller: CallerDep, page: PageDep, response: Response
) -> schemas.ThreadDetailOut:
    """A thread with its messages, newest first (`limit`/`cursor` page through older ones).
    `ETag` is the thread's own (what PATCH changes), not its messages'."""
    async with caller.context() as (ctx, uow):
        detail = await messaging.get_thread(ctx, uow, thread_id, page)
        return tagged(response, detail, detail.thread)


@router.patch("/threads/{thread_id}", response_model=schemas.ThreadOut)
async def update_thread(
    thread_id: uuid.UUID,
    data: schemas.ThreadUpdateIn,
    caller: CallerDep,
    response: Response,
    if_match: IfMatch = None,
) -> schemas.ThreadOut:
    """Status (snooze with `snoozed_until`), assignee, labels, agent mode (a person only)."""
    return tagged(response, await caller.call(messaging.update_thread, thread_id, data, if_match))


@router.post(
    "/threads/{thread_id}/messages", status_code=status.HTTP_201_CREATED, response_model=schemas.MessageOut
)
async def send_message(
    thread_id: uuid.UUID, data: schemas.SendIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> schemas.MessageOut:
    """Send a message to the thread's client (queued, then delivered on the thread's channel)."""
    return await caller.call(messaging.send_message, thread_id, data, idempotency_key=idempotency_key)


@router.post("/threads/{thread_id}/read", response_model=schemas.ThreadOut)
async def mark_read(thread_id: uuid.UUID, data: schemas.ReadIn, caller: CallerDep) -> schemas.ThreadOut:
    """Read markers: mark the client's messages read (all, or up to one), or unread."""
    return await caller.call(messaging.mark_read, thread_id, data)


@router.post("/messages/{message_id}/retry", response_model=schemas.MessageOut)
async def retry_delivery(message_id: uuid.UUID, caller: CallerDep) -> schemas.MessageOut:
    """Queue a failed outbound message for delivery again."""
    return await caller.call(messaging.retry_delivery, message_id)


@router.get("/drafts", response_model=Page[schemas.DraftOut])
async def list_drafts(
    caller: CallerDep,
    page: PageDep,
    thread_id: uuid.UUID | None = None,
    status_: Annotated[
        schemas.DraftStatus | Literal["any"],
        Query(alias="status", description="Default `pending`; `any` for all."),
    ] = "pending",
) -> Page[schemas.DraftOut]:
    """Drafts awaiting a decision (or of another status), newest first."""
    return await caller.call(messaging.list_drafts, page, thread_id, None if status_ == "any" else status_)


@router.post(
    "/threads/{thread_id}/drafts", status_code=status.HTTP_201_CREATED, response_model=schemas.DraftOut
)
async def create_draft(
    thread_id: uuid.UUID, data: schemas.DraftIn, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> schemas.DraftOut:
    """Propose a reply for a person to approve."""
    return await caller.call(messaging.create_draft, thread_id, data, idempotency_key=idempotency_key)


@router.post(
    "/threads/{thread_id}/drafts/generate",
    status_code=status.HTTP_201_CREATED,
    response_model=schemas.DraftOut,
)
async def generate_draft(
    thread_id: uuid.UUID,
    data: schemas.DraftGenerateIn,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> schemas.DraftOut:
    """Ask the drafting peer for a reply; it becomes a pending draft."""
    return await caller.call(messaging.generate_draft, thread_id, data, idempotency_key=idempotency_key)


@router.get("/drafts/{draft_id}", response_model=schemas.DraftOut)
async def get_draft(draft_id: uuid.UUID, caller: CallerDep) -> schemas.DraftOut:
    return await caller.call(messaging.get_draft, draft_id)


@router.post("/drafts/{draft_id}/approve", response_model=schemas.DraftApprovedOut)
async def approve_draft(
    draft_id: uuid.UUID,
    data: schemas.DraftApproveIn,
    caller: CallerDep,
    idempotency_key: IdempotencyKey = None,
) -> schemas.DraftApprovedOut:
    """Approve a pending draft (a signed-in person): it is sent, edited if `body` is given."""
    return await caller.call(messaging.approve_draft, draft_id, data, idempotency_key=idempotency_key)


@router.post("/drafts/{draft_id}/reject", response_model=schemas.DraftOut)
async def reject_draft(
    draft_id: uuid.UUID, data: schemas.DraftRejectIn, caller: CallerDep
) -> schemas.DraftOut:
    """Reject a pending draft with a reason."""
    return await caller.call(messaging.reject_draft, draft_id, data)


@router.post("/inbound", response_model=schemas.IngestOut)
async def ingest(data: schemas.InboundIn | schemas.InboundBatchIn, caller: CallerDep) -> schemas.IngestOut:
    """For channel peers (API key with `messaging:ingest`): one message, or `{"messages": [...]}`
    (up to 50, all or nothing). Idempotent on (channel, external_id)."""
    return await caller.call(messaging.ingest, data)


@router.get("/settings", response_model=schemas.SettingsOut)
async def get_settings(caller: CallerDep, response: Response) -> schemas.SettingsOut:
    return tagged(response, await caller.call(messaging.get_settings))


@router.put("/settings", response_model=schemas.SettingsOut)
async def update_settings(
    data: schemas.SettingsIn, caller: CallerDep, response: Response, if_match: IfMatch = None
) -> schemas.SettingsOut:
    """Replace the context's settings (a person; owner or admin in an org)."""
    return tagged(response, await caller.call(messaging.update_settings, data, if_match))


@router.get("/threads/{thread_id}/client-link", response_model=ClientLinkOut)
async def client_link(thread_id: uuid.UUID, caller: CallerDep) -> ClientLinkOut:
    """The client's conversation link of a portal thread (issued by the first message sent)."""
    return await caller.call(messaging.client_link, thread_id)


@router.post("/threads/{thread_id}/client-link/revoke", response_model=ClientLinkOut)
async def revoke_client_link(thread_id: uuid.UUID, caller: CallerDep) -> ClientLinkOut:
    """Stop the link from opening the conversation; the next message sent issues a new one."""
    return await caller.call(messaging.revoke_client_link, thread_id)
