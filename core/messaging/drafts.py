"""Drafts: replies proposed by agents or people, which a person approves (sending them) or rejects."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import func, select, update

from core.context import TenantContext
from core.errors import Conflict
from core.idempotency import idempotent_operation
from core.messaging.messages import append_outbound
from core.messaging.models import Draft, Message, Thread
from core.messaging.policy import READ, WRITE, agent_may, is_agent, require_deliverable, require_person
from core.messaging.presenters import draft_out, message_out
from core.messaging.queries import thread_for_send, thread_row
from core.messaging.schemas import DraftApprovedOut, DraftApproveIn, DraftIn, DraftOut, DraftRejectIn
from core.pagination import Page, PageRequest
from core.scoping import (
    get_in_context,
    in_context,
    insert_in_context,
    keyset_page,
    map_page,
    not_in_context,
    scoped,
    where_given,
)
from core.uow import UnitOfWork


async def list_drafts(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    thread_id: uuid.UUID | None = None,
    status: str | None = "pending",
) -> Page[DraftOut]:
    """Drafts of this context, newest first (default: the pending ones awaiting a person)."""
    ctx.require(READ)
    stmt = where_given(scoped(Draft, ctx), (Draft.thread_id, thread_id), (Draft.status, status))
    filters = (thread_id, status)
    rows = await keyset_page(uow, stmt, page, Draft.created_at, Draft.id, descending=True, under=filters)
    return map_page(rows, draft_out)


async def get_draft(ctx: TenantContext, uow: UnitOfWork, draft_id: uuid.UUID) -> DraftOut:
    ctx.require(READ)
    return draft_out(await _draft(ctx, uow, draft_id))


async def _draft(ctx: TenantContext, uow: UnitOfWork, draft_id: uuid.UUID) -> Draft:
    not_found = not_in_context("draft", "list drafts with [[messaging.list_drafts]]")
    return await get_in_context(uow, Draft, ctx, draft_id, not_found=not_found)


async def _latest_inbound_id(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID) -> uuid.UUID | None:
    return (
        await uow.session.execute(
            select(Message.id)
            .where(Message.thread_id == thread_id, in_context(Message, ctx), Message.direction == "in")
            .order_by(Message.occurred_at.desc(), Message.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def insert_draft(ctx: TenantContext, uow: UnitOfWork, thread: Thread, **values: Any) -> Draft:
    draft = await insert_in_context(
        uow,
        Draft,
        ctx,
        thread_id=thread.id,
        created_by_person_id=ctx.person_id,
        created_by_api_key_id=ctx.principal.api_key_id,
        reply_to_message_id=await _latest_inbound_id(ctx, uow, thread.id),
        **values,
    )
    uow.emit(
        "messaging/draft.created",
        {"draft_id": draft.id, "thread_id": thread.id, "created_by_kind": draft.created_by_kind},
    )
    return draft


@idempotent_operation("messaging.draft_create")
async def create_draft(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread_id: uuid.UUID,
    data: DraftIn,
    idempotency_key: str | None = None,
) -> DraftOut:
    """Propose a reply for a person to approve (agents: allowed unless the thread's mode is off)."""
    ctx.require(WRITE)
    thread, _, _ = await thread_row(ctx, uow, thread_id)
    agent_may(ctx, thread.agent_mode, "draft")
    draft = await insert_draft(
        ctx, uow, thread, body=data.body, created_by_kind="agent" if is_agent(ctx) else "person"
    )
    return draft_out(draft)


def _not_pending(draft: Draft) -> Conflict:
    hints = {
        "approved": "it was already approved and sent",
        "rejected": "it was rejected; create a new draft",
        "superseded": "the client wrote since; generate or write a new draft",
    }
    return Conflict(
        f"this draft is {draft.status}, no longer pending",
        code="draft_not_pending",
        hint=hints.get(draft.status),
        extra={"draft_status": draft.status},
    )


@idempotent_operation("messaging.draft_approve")
async def approve_draft(
    ctx: TenantContext,
    uow: UnitOfWork,
    draft_id: uuid.UUID,
    data: DraftApproveIn,
    idempotency_key: str | None = None,
) -> DraftApprovedOut:
    """A person approves a pending draft (optionally edited): it is sent as an outbound message.
    Claimed with a conditional UPDATE, so two approvals racing send exactly one message."""
    ctx.require(WRITE)
    require_person(ctx, "approving a draft", "human_approval_required")
    draft = await _draft(ctx, uow, draft_id)
    if draft.status != "pending":
        raise _not_pending(draft)
    target = await thread_for_send(ctx, uow, draft.thread_id)
    require_deliverable(uow, target, target.channel, target)
    body = data.body if data.body is not None else draft.body
    await _decide(ctx, uow, draft, "approved", edited=body != draft.body)
    message = await append_outbound(
        ctx, uow, target, body, [], draft_id=draft.id, author_kind="person", status=data.status
    )
    approved = (
        await uow.session.execute(
            update(Draft).where(Draft.id == draft.id).values(sent_message_id=message.id).returning(Draft),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    uow.emit(
        "messaging/draft.approved",
        {"draft_id": draft.id, "thread_id": target.id, "message_id": message.id, "edited": approved.edited},
    )
    return DraftApprovedOut(draft=draft_out(approved), message=message_out(message))


async def reject_draft(
    ctx: TenantContext, uow: UnitOfWork, draft_id: uuid.UUID, data: DraftRejectIn
) -> DraftOut:
    """Reject a pending draft with a reason (a person; an agent only withdraws its own)."""
    ctx.require(WRITE)
    draft = await _draft(ctx, uow, draft_id)
    own = ctx.principal.api_key_id is not None and draft.created_by_api_key_id == ctx.principal.api_key_id
    if is_agent(ctx) and not own:
        require_person(ctx, "rejecting another's draft", "human_approval_required")
    rejected = await _decide(ctx, uow, draft, "rejected", rejection_reason=data.reason)
    uow.emit(
        "messaging/draft.rejected",
        {"draft_id": draft.id, "thread_id": draft.thread_id, "by_agent": is_agent(ctx)},
    )
    return draft_out(rejected)


async def _decide(ctx: TenantContext, uow: UnitOfWork, draft: Draft, status: str, **values: Any) -> Draft:
    """Moves a pending draft to `status`, decided by the caller, or raises `draft_not_pending`
    when another decision (or a new client message) won the row first: a draft is decided once."""
    decided = (
        await uow.session.execute(
            update(Draft)
            .where(Draft.id == draft.id, in_context(Draft, ctx), Draft.status == "pending")
            .values(
                status=status,
                decided_by_person_id=ctx.person_id,
                decided_at=func.now(),
                updated_at=func.now(),
                **values,
            )
            .returning(Draft),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()
    if decided is None:
        await uow.session.refresh(draft)
        raise _not_pending(draft)
    return decided
