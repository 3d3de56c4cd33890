"""Threads: the inbox (filters, search), a thread with its messages, starting a conversation,
status and snooze, assignee, labels and agent mode."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Select, func, literal_column, or_, select, text, update

from core.context import TenantContext
from core.errors import FieldIssue, NotFound, ValidationFailed
from core.idempotency import idempotent_operation
from core.messaging.messages import append_outbound_with_thread
from core.messaging.models import Draft, Message, Thread
from core.messaging.policy import READ, WRITE, agent_may, check_channel, require_deliverable, require_person
from core.messaging.presenters import draft_out, message_out, thread_out
from core.messaging.queries import new_thread, settings_row, thread_row, thread_select
from core.messaging.schemas import (
    MessageOut,
    ThreadCountsOut,
    ThreadDetailOut,
    ThreadIn,
    ThreadOut,
    ThreadUpdateIn,
)
from core.pagination import Page, PageRequest
from core.preconditions import require_match
from core.scoping import (
    get_in_context,
    in_context,
    keyset_page,
    keyset_rows,
    map_page,
    not_in_context,
    scoped,
    where_given,
)
from core.tenancy.models import Client, OrgMember, Person
from core.tenancy.queries import person_id_by_slug
from core.uow import UnitOfWork


@dataclass(frozen=True)
class ThreadFilter:
    status: str | None = None
    assignee: str | None = None  # a slug, "me" or "none"
    label: str | None = None
    client_id: uuid.UUID | None = None
    channel: str | None = None
    unread: bool | None = None
    q: str | None = None


_WORD = re.compile(r"\w+", re.UNICODE)


def _tsquery(q: str) -> str:
    """Words of `q` as a prefix query: `book tues` finds "booking on Tuesday". Only word
    characters reach to_tsquery, so its syntax cannot be injected."""
    words = [w.lower() for w in _WORD.findall(q)][:8]
    if not words:
        raise ValidationFailed(
            "the search needs at least one word",
            code="invalid_query",
            hint="search with words from the subject or the messages",
            errors=[FieldIssue("q", "no words")],
        )
    return " & ".join(f"{w}:*" for w in words)


async def _assignee_id(ctx: TenantContext, uow: UnitOfWork, slug: str, field: str = "assignee") -> uuid.UUID:
    """A person who may be assigned in this context: an org member, or yourself when personal.
    `me` is the caller, as in the inbox filter."""
    if slug in ("me", ctx.person_slug):
        return ctx.person_id
    person_id = (
        await uow.session.execute(text("SELECT platform.person_id_by_slug(:s)"), {"s": slug})
    ).scalar_one_or_none()
    member = None
    if person_id is not None and ctx.org_id is not None:
        member = (
            await uow.session.execute(
                select(OrgMember.person_id).where(
                    OrgMember.org_id == ctx.org_id, OrgMember.person_id == person_id
                )
            )
        ).scalar_one_or_none()
    if member is None:
        raise ValidationFailed(
            f"{slug!r} is not a member of this context",
            code="assignee_not_member",
            hint="assign a member of the org ([[tenancy.list_members]]); in your personal context, "
            "only yourself",
            errors=[FieldIssue(field, "not a member", "not_member")],
        )
    return uuid.UUID(str(member))


async def _inbox(ctx: TenantContext, uow: UnitOfWork, f: ThreadFilter) -> Select[Thread, Client, Person]:
    """The threads of this context the filters keep, as `thread_select` rows: the one reading
    of the filters, for the list and for its counts."""
    stmt = where_given(
        thread_select(ctx),
        (Thread.status, f.status),
        (Thread.client_id, f.client_id),
        (Thread.channel, f.channel),
    )
    if f.assignee == "none":
        stmt = stmt.where(Thread.assignee_id.is_(None))
    elif f.assignee == "me":
        stmt = stmt.where(Thread.assignee_id == ctx.person_id)
    elif f.assignee:
        try:
            person_id = await person_id_by_slug(uow, f.assignee)
        except NotFound as exc:
            # A filter's mistake (a typo), said about the filter: never read as "unassigned".
            raise ValidationFailed(
                f"no one has the handle {f.assignee!r}",
                code="unknown_assignee",
                hint="filter by a member's slug ([[tenancy.list_members]]), `me` or `none`",
                errors=[FieldIssue("assignee", "no such person", "not_found")],
            ) from exc
        stmt = stmt.where(Thread.assignee_id == person_id)
    if f.label:
        stmt = stmt.where(Thread.labels.contains([f.label]))
    if f.unread is True:
        stmt = stmt.where(Thread.unread_count > 0)
    elif f.unread is False:
        stmt = stmt.where(Thread.unread_count == 0)
    if f.q:
        query = func.to_tsquery(literal_column("'simple'::regconfig"), _tsquery(f.q))
        pattern = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        in_messages = select(Message.thread_id).where(
            in_context(Message, ctx), Message.search.op("@@")(query)
        )
        stmt = stmt.where(
            or_(
                Thread.search.op("@@")(query),
                Thread.id.in_(in_messages),
                Client.name.ilike(pattern),
                Client.email.ilike(pattern),
            )
        )
    return stmt


async def list_threads(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, filters: ThreadFilter | None = None
) -> Page[ThreadOut]:
    """The inbox: threads of this context, most recent activity first."""
    ctx.require(READ)
    f = filters or ThreadFilter()
    stmt = await _inbox(ctx, uow, f)
    rows = await keyset_rows(uow, stmt, page, Thread.last_activity_at, Thread.id, descending=True, under=f)
    return map_page(rows, lambda r: thread_out(r[0], r[1], r[2]))


async def count_threads(
    ctx: TenantContext, uow: UnitOfWork, filters: ThreadFilter | None = None
) -> ThreadCountsOut:
    """How many threads the inbox holds under the same filters as the list, how many of them
    have unread messages, and how many unread messages that is: exact, in one statement."""
    ctx.require(READ)
    stmt = await _inbox(ctx, uow, filters or ThreadFilter())
    counted = stmt.with_only_columns(
        func.count(),
        func.count().filter(Thread.unread_count > 0),
        func.coalesce(func.sum(Thread.unread_count), 0),
        maintain_column_froms=True,
    )
    threads, unread, messages = (await uow.session.execute(counted)).one()
    return ThreadCountsOut(threads=threads, unread_threads=unread, unread_messages=messages)


async def get_thread(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, page: PageRequest
) -> ThreadDetailOut:
    """A thread with its messages (newest first, paginated) and its pending drafts."""
    ctx.require(READ)
    thread, client, assignee = await thread_row(ctx, uow, thread_id)
    stmt = scoped(Message, ctx).where(Message.thread_id == thread.id)
    messages = await keyset_page(uow, stmt, page, Message.occurred_at, Message.id, descending=True)
    drafts = list(
        (
            await uow.session.execute(
                select(Draft)
                .where(Draft.thread_id == thread.id, in_context(Draft, ctx), Draft.status == "pending")
                .order_by(Draft.created_at.desc(), Draft.id.desc())
                .limit(10)
            )
        ).scalars()
    )
    return ThreadDetailOut(
        thread=thread_out(thread, client, assignee),
        messages=[message_out(m) for m in messages.items],
        next_cursor=messages.next_cursor,
        pending_drafts=[draft_out(d) for d in drafts],
    )


async def _client_in_context(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID) -> Client:
    not_found = not_in_context(
        "client",
        "find the client with [[tenancy.list_clients]] in the same context",
        FieldIssue("client_id", "unknown client", "not_found"),
    )
    return await get_in_context(uow, Client, ctx, client_id, not_found=not_found)


@idempotent_operation("messaging.thread_create")
async def create_thread(
    ctx: TenantContext, uow: UnitOfWork, data: ThreadIn, idempotency_key: str | None = None
) -> ThreadDetailOut:
    """Start a conversation with a client of this context, optionally sending a first message."""
    ctx.require(WRITE)
    check_channel(uow, data.channel)
    if data.agent_mode is not None:
        require_person(ctx, "choosing a thread's agent mode", "agent_mode_human_only")
    client = await _client_in_context(ctx, uow, data.client_id)
    cfg = await settings_row(ctx, uow)
    mode = data.agent_mode or (cfg.default_agent_mode if cfg else "draft_only")
    if data.body is not None:
        agent_may(ctx, mode, "send")
        require_deliverable(uow, cfg, data.channel, client)
    thread = await new_thread(
        ctx, uow, client_id=client.id, channel=data.channel, subject=data.subject, agent_mode=mode
    )
    messages: list[MessageOut] = []
    if data.body is not None:
        message, thread = await append_outbound_with_thread(ctx, uow, thread, data.body, data.attachments)
        messages.append(message_out(message))
    return ThreadDetailOut(
        thread=thread_out(thread, client, None), messages=messages, next_cursor=None, pending_drafts=[]
    )


async def update_thread(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread_id: uuid.UUID,
    data: ThreadUpdateIn,
    if_match: str | None = None,
) -> ThreadOut:
    """Change status (snooze until a time), assignee, labels, or agent mode (a person only).
    `if_match`: the ETag of the thread (not of its messages) the change is based on."""
    ctx.require(WRITE)
    given = data.model_fields_set
    if "agent_mode" in given:
        require_person(ctx, "changing a thread's agent mode", "agent_mode_human_only")
    thread, client, current_assignee = await thread_row(ctx, uow, thread_id, lock=True)
    if if_match is not None:
        require_match(if_match, thread_out(thread, client, current_assignee), what="thread")
    changes: dict[str, Any] = {}
    _change_status(uow, thread, data, changes)
    if "assignee" in given:
        await _change_assignee(ctx, uow, thread, data.assignee, changes)
    _change_labels(thread, data, changes)
    if data.agent_mode is not None and data.agent_mode != thread.agent_mode:
        changes["agent_mode"] = {"from": thread.agent_mode, "to": data.agent_mode}
        thread.agent_mode = data.agent_mode
    if changes:
        thread.updated_at = dt.datetime.now(dt.UTC)
        await uow.session.flush()
        uow.emit("messaging/thread.updated", {"thread_id": thread.id, "changes": changes})
    assignee: Person | None = None
    if thread.assignee_id is not None:
        assignee = await uow.session.get(Person, thread.assignee_id)
    return thread_out(thread, client, assignee)


def _snooze_problem(until: dt.datetime | None) -> str | None:
    """What is wrong with a snooze's end, in words; None when it is a time to come."""
    if until is None:
        return "say until when the thread stays snoozed (snoozed_until)"
    if until.tzinfo is None:
        return "the snooze end needs a time zone, e.g. Z for UTC or +02:00"
    if until <= dt.datetime.now(dt.UTC):
        return "the snooze end has already passed; it must be in the future"
    return None


def _change_status(uow: UnitOfWork, thread: Thread, data: ThreadUpdateIn, changes: dict[str, Any]) -> None:
    """A new status, or a snooze (`snoozed_until` alone means snoozed), checked and applied."""
    given = data.model_fields_set
    status = data.status if "status" in given else ("snoozed" if data.snoozed_until else None)
    if status is None:
        return
    until = data.snoozed_until if status == "snoozed" else None
    if status == "snoozed":
        problem = _snooze_problem(until)
        if problem is not None:
            raise ValidationFailed(
                f"cannot snooze: {problem}",
                code="snooze_time_required",
                hint="choose a date and time later than now, with its time zone (snoozed_until, e.g."
                " 2026-12-01T09:00:00Z); a reply from the client reopens the thread earlier",
                errors=[FieldIssue("snoozed_until", problem)],
            )
    elif data.snoozed_until is not None:
        raise ValidationFailed(
            "`snoozed_until` only goes with status `snoozed`",
            code="snooze_time_unexpected",
            hint="send `status: snoozed` with it, or leave `snoozed_until` out",
            errors=[FieldIssue("snoozed_until", "only with status snoozed")],
        )
    if status != thread.status or until != thread.snoozed_until:
        before = thread.status
        thread.status, thread.snoozed_until = status, until
        changes["status"] = status
        if before != status:
            uow.emit(
                "messaging/thread.status_changed",
                {"thread_id": thread.id, "from": before, "to": status, "snoozed_until": until},
            )


async def _change_assignee(
    ctx: TenantContext, uow: UnitOfWork, thread: Thread, slug: str | None, changes: dict[str, Any]
) -> None:
    new_id = await _assignee_id(ctx, uow, slug) if slug else None
    if new_id != thread.assignee_id:
        uow.emit(
            "messaging/thread.assigned",
            {"thread_id": thread.id, "assignee_id": new_id, "previous_assignee_id": thread.assignee_id},
        )
        thread.assignee_id = new_id
        changes["assignee"] = str(new_id) if new_id else None


def _change_labels(thread: Thread, data: ThreadUpdateIn, changes: dict[str, Any]) -> None:
    """`labels` replaces the set; `add_labels` / `remove_labels` edit it."""
    labels = list(thread.labels or [])
    if data.labels is not None:
        labels = sorted(set(data.labels))
    else:
        labels = sorted((set(labels) | set(data.add_labels)) - set(data.remove_labels))
    if len(labels) > 20:
        raise ValidationFailed(
            "a thread has at most 20 labels",
            code="too_many_labels",
            hint="remove labels it no longer needs (`remove_labels`) before adding others",
            errors=[FieldIssue("labels", "max 20")],
        )
    if labels != sorted(thread.labels or []):
        thread.labels = labels
        changes["labels"] = labels


async def wake_snoozed_threads(uow: UnitOfWork) -> int:
    """Reopen snoozed threads whose time has come (every minute, across tenants)."""
    rows = (
        await uow.session.execute(
            update(Thread)
            .where(Thread.status == "snoozed", Thread.snoozed_until <= func.now())
            .values(status="open", snoozed_until=None, updated_at=func.now())
            .returning(Thread.id, Thread.person_id, Thread.org_id)
        )
    ).all()
    for thread_id, person_id, org_id in rows:
        uow.emit(
            "messaging/thread.status_changed",
            {"thread_id": thread_id, "from": "snoozed", "to": "open", "reason": "snooze_ended"},
            person_id=person_id,
            org_id=org_id,
        )
    return len(rows)
