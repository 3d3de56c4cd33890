"""Messaging: the provider-client inbox, inbound ingest from peers, outbound messages, agent
drafts that a person approves, and the per-thread agent mode that decides what agents may do.

Every rule lives here once; REST routes and MCP tools call these functions. "Agent" means a
request authenticated with an API key; a session token is a person. Agent mode binds agents
only: a person may always send, and approving a draft is always a person's act.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Select, and_, func, literal_column, or_, select, text, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from core import idempotency
from core.context import PrincipalKind, Role, TenantContext, register_scopes
from core.errors import (
    Conflict,
    DomainError,
    FieldIssue,
    NotFound,
    PermissionDenied,
    Unavailable,
    ValidationFailed,
)
from core.idempotency import idempotent_operation
from core.messaging import peers
from core.messaging.models import Draft, Message, MessagingSettings, Thread
from core.messaging.schemas import (
    MAX_BODY_CHARS,
    AttachmentIn,
    AttachmentOut,
    AuthorOut,
    ChannelOut,
    ClientRef,
    DraftApprovedOut,
    DraftApproveIn,
    DraftGenerateIn,
    DraftIn,
    DraftOut,
    DraftRejectIn,
    InboundBatchIn,
    InboundIn,
    IngestItemOut,
    IngestOut,
    MessageOut,
    ProfileIn,
    ReadIn,
    SendIn,
    SettingsIn,
    SettingsOut,
    ThreadDetailOut,
    ThreadIn,
    ThreadOut,
    ThreadUpdateIn,
)
from core.observability import get_logger
from core.pagination import Page, PageRequest, decode_cursor, encode_cursor
from core.preconditions import lock_resource, require_match
from core.tenancy.matching import find_or_create_client
from core.tenancy.models import Client, OrgMember, Person
from core.tenancy.schemas import PersonRef
from core.uow import UnitOfWork

log = get_logger("atlilith.messaging")

READ = "messaging:read"
WRITE = "messaging:write"
INGEST = "messaging:ingest"
register_scopes(
    {
        READ: "read threads, messages and drafts",
        WRITE: "send messages, manage threads, create and decide drafts",
        INGEST: "deliver inbound messages from a channel peer (mail sync, iMessage sync)",
    }
)

PREVIEW_CHARS = 200
# A message older than the thread's last activity by more than this is history being imported,
# not a new reply: it neither reopens the thread nor supersedes drafts.
BACKFILL_SLACK = dt.timedelta(minutes=10)
# Channels whose delivery peer needs the client's email / phone.
_NEEDS_EMAIL = {"email"}
_NEEDS_PHONE = {"sms", "imessage", "whatsapp"}


class BadGateway(DomainError):
    status = 502
    default_code = "bad_gateway"
    title = "Bad gateway"


# --- context helpers ------------------------------------------------------------------------------


def is_agent(ctx: TenantContext) -> bool:
    # An MCP host connected through OAuth is as much an agent as one holding an API key.
    return ctx.principal.kind in (PrincipalKind.API_KEY, PrincipalKind.OAUTH)


def _require_person(ctx: TenantContext, what: str, code: str) -> None:
    if not ctx.principal.is_human:
        raise PermissionDenied(
            f"{what} is a person's decision; an API key (agent) cannot do it",
            code=code,
            hint="a signed-in person does this in the portal (session token)",
        )


def _agent_may(ctx: TenantContext, mode: str, action: Literal["send", "draft"]) -> None:
    """The per-thread agent mode, enforced for agents on every door."""
    if not is_agent(ctx):
        return
    if mode == "off":
        raise PermissionDenied(
            "agents are switched off for this thread: they may neither draft nor send",
            code="agent_mode_off",
            hint="leave this thread to a person; only a person can change its agent mode",
            extra={"agent_mode": mode},
        )
    if action == "send" and mode != "auto":
        raise PermissionDenied(
            "this thread is in draft_only mode: agents may draft replies but not send them",
            code="agent_mode_draft_only",
            hint="create a draft instead ([[messaging.create_draft]]); a person approves and sends it",
            extra={"agent_mode": mode},
        )


def _context_kind(org_id: uuid.UUID | None) -> Literal["personal", "org"]:
    return "org" if org_id else "personal"


# --- output builders -----------------------------------------------------------------------------


def _client_ref(c: Client) -> ClientRef:
    return ClientRef(id=c.id, untrusted_name=c.name, email=c.email, phone=c.phone)


def _thread_out(t: Thread, c: Client, assignee: Person | None) -> ThreadOut:
    return ThreadOut(
        id=t.id,
        client=_client_ref(c),
        channel=t.channel,
        untrusted_subject=t.subject,
        status=t.status,
        snoozed_until=t.snoozed_until,
        assignee=PersonRef(id=assignee.id, slug=assignee.slug, display_name=assignee.display_name)
        if assignee
        else None,
        labels=list(t.labels or []),
        agent_mode=t.agent_mode,
        unread_count=t.unread_count,
        message_count=t.message_count,
        untrusted_preview=t.preview,
        last_activity_at=t.last_activity_at,
        last_inbound_at=t.last_inbound_at,
        context=_context_kind(t.org_id),
        org_id=t.org_id,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def _attachments_out(raw: list[dict[str, Any]] | None) -> list[AttachmentOut]:
    return [
        AttachmentOut(
            url=str(a.get("url", "")),
            content_type=str(a.get("content_type", "")),
            size_bytes=int(a.get("size_bytes", 0)),
            untrusted_name=a.get("name"),
        )
        for a in raw or []
    ]


def _message_out(m: Message) -> MessageOut:
    inbound = m.direction == "in"
    return MessageOut(
        id=m.id,
        thread_id=m.thread_id,
        direction=m.direction,
        channel=m.channel,
        author=AuthorOut(kind=m.author_kind, person_id=m.author_person_id, api_key_id=m.author_api_key_id),
        untrusted_body=m.body if inbound else None,
        body=None if inbound else m.body,
        attachments=_attachments_out(m.attachments),
        external_id=m.external_id,
        delivery_status=m.delivery_status,
        failure_reason=m.failure_reason,
        delivery_attempts=m.delivery_attempts,
        sent_at=m.sent_at,
        read_at=m.read_at,
        draft_id=m.draft_id,
        occurred_at=m.occurred_at,
        created_at=m.created_at,
    )


def _draft_out(d: Draft) -> DraftOut:
    author_kind = "agent" if d.created_by_api_key_id else "person"
    return DraftOut(
        id=d.id,
        thread_id=d.thread_id,
        status=d.status,
        body=d.body,
        created_by=AuthorOut(
            kind=author_kind,
            person_id=d.created_by_person_id,
            api_key_id=d.created_by_api_key_id,
        ),
        created_by_kind=d.created_by_kind,
        peer=d.peer,
        peer_model=d.peer_model,
        latency_ms=d.latency_ms,
        prompt_hash=d.prompt_hash,
        reply_to_message_id=d.reply_to_message_id,
        decided_by_person_id=d.decided_by_person_id,
        decided_at=d.decided_at,
        rejection_reason=d.rejection_reason,
        edited=d.edited,
        sent_message_id=d.sent_message_id,
        superseded_by_message_id=d.superseded_by_message_id,
        created_at=d.created_at,
        updated_at=d.updated_at,
    )


def _preview(body: str, attachments: list[AttachmentIn]) -> str:
    text_ = " ".join(body.split())
    if not text_ and attachments:
        text_ = f"[{len(attachments)} attachment{'s' if len(attachments) > 1 else ''}]"
    return text_[:PREVIEW_CHARS]


def _attachments_in(items: list[AttachmentIn]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json", exclude_none=True) for a in items]


# --- settings and channels ------------------------------------------------------------------------


def _check_channel(uow: UnitOfWork, channel: str, field: str = "channel") -> str:
    allowed = uow.db.settings.messaging_channels
    if channel not in allowed:
        raise ValidationFailed(
            f"the channel {channel!r} is not configured on this platform",
            code="unknown_channel",
            hint=f"use one of: {', '.join(allowed)}",
            errors=[FieldIssue(field, "unknown channel", "unknown_channel")],
        )
    return channel


def _peer_for(uow: UnitOfWork, cfg: MessagingSettings | None, channel: str) -> tuple[str | None, str]:
    """The delivery peer URL of a channel for this context, and where it comes from."""
    own = (cfg.channel_peers or {}).get(channel) if cfg else None
    if own:
        return str(own), "context"
    platform = uow.db.settings.messaging_channel_peers.get(channel)
    if platform:
        return platform, "platform"
    return None, "none"


def _require_deliverable(
    uow: UnitOfWork, cfg: MessagingSettings | None, channel: str, client: Client
) -> None:
    if channel != "portal" and _peer_for(uow, cfg, channel)[0] is None:
        raise Conflict(
            f"no delivery peer is configured for the {channel!r} channel",
            code="channel_not_configured",
            hint="configure its peer (`channel_peers` in [[messaging.update_settings]], or the platform's "
            "ATLILITH_MESSAGING_CHANNEL_PEERS), or use the `portal` channel",
        )
    if channel in _NEEDS_EMAIL and not client.email:
        raise Conflict(
            "this client has no email address",
            code="client_unreachable",
            hint="add an email to the client ([[tenancy.update_client]]) or use another channel",
        )
    if channel in _NEEDS_PHONE and not client.phone:
        raise Conflict(
            "this client has no phone number",
            code="client_unreachable",
            hint="add a phone number to the client ([[tenancy.update_client]]) or use another channel",
        )


async def _settings_row(ctx: TenantContext, uow: UnitOfWork) -> MessagingSettings | None:
    return (
        await uow.session.execute(
            select(MessagingSettings).where(MessagingSettings.tenant_id == ctx.tenant_id)
        )
    ).scalar_one_or_none()


def _settings_out(uow: UnitOfWork, ctx: TenantContext, cfg: MessagingSettings | None) -> SettingsOut:
    channels = []
    for name in uow.db.settings.messaging_channels:
        url, source = _peer_for(uow, cfg, name)
        channels.append(ChannelOut(name=name, deliverable=name == "portal" or url is not None, peer=source))
    draft_url = (cfg.draft_peer_url if cfg else None) or uow.db.settings.messaging_draft_peer_url
    return SettingsOut(
        default_agent_mode=cfg.default_agent_mode if cfg else "draft_only",
        profile=ProfileIn.model_validate(cfg.profile if cfg else {}),
        channel_peers=dict(cfg.channel_peers or {}) if cfg else {},
        draft_peer_url=cfg.draft_peer_url if cfg else None,
        channels=channels,
        draft_peer_configured=draft_url is not None,
        context=_context_kind(ctx.org_id),
        updated_at=cfg.updated_at if cfg else None,
    )


async def get_settings(ctx: TenantContext, uow: UnitOfWork) -> SettingsOut:
    """The context's messaging settings: agent default, provider profile and tone, peers."""
    ctx.require(READ)
    return _settings_out(uow, ctx, await _settings_row(ctx, uow))


async def update_settings(
    ctx: TenantContext, uow: UnitOfWork, data: SettingsIn, if_match: str | None = None
) -> SettingsOut:
    """Replace the context's settings (a person; in an org, an owner or admin). `if_match`: the
    ETag the change is based on (core.preconditions); None = last write wins."""
    ctx.require(WRITE)
    _require_person(ctx, "changing messaging settings", "session_required")
    if ctx.org_id is not None:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    # The settings may have no row yet, so writers queue on the context itself.
    await lock_resource(uow, "messaging.settings", ctx.tenant_id)
    if if_match is not None:
        require_match(if_match, _settings_out(uow, ctx, await _settings_row(ctx, uow)), what="settings")
    allowed = uow.db.settings.messaging_peer_allowed_hosts
    urls = {f"channel_peers.{k}": v for k, v in data.channel_peers.items()}
    if data.draft_peer_url:
        urls["draft_peer_url"] = data.draft_peer_url
    for channel in data.channel_peers:
        _check_channel(uow, channel, f"channel_peers.{channel}")
        if channel == "portal":
            raise ValidationFailed(
                "the portal channel needs no peer",
                code="portal_has_no_peer",
                errors=[FieldIssue("channel_peers.portal", "not allowed")],
            )
    refused = [field for field, url in urls.items() if not peers.host_allowed(url, allowed)]
    if refused:
        raise ValidationFailed(
            "this platform does not allow contexts to send data to these peer hosts",
            code="peer_url_not_allowed",
            hint="use the platform's peers (leave these empty) or ask the operator to allow the host "
            "(ATLILITH_MESSAGING_PEER_ALLOWED_HOSTS)",
            errors=[FieldIssue(f, "host not allowed", "peer_url_not_allowed") for f in refused],
        )
    values = {
        "default_agent_mode": data.default_agent_mode,
        "profile": data.profile.model_dump(exclude_none=True),
        "channel_peers": dict(data.channel_peers),
        "draft_peer_url": data.draft_peer_url,
    }
    cfg = (
        await uow.session.execute(
            insert(MessagingSettings)
            .values(id=uuid.uuid4(), person_id=ctx.person_id, org_id=ctx.org_id, **values)
            .on_conflict_do_update(
                index_elements=[MessagingSettings.tenant_id], set_={**values, "updated_at": func.now()}
            )
            .returning(MessagingSettings),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    uow.emit("messaging/settings.updated", {"default_agent_mode": data.default_agent_mode})
    return _settings_out(uow, ctx, cfg)


# --- threads: reading ---------------------------------------------------------------------------------


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


def _thread_select(ctx: TenantContext) -> Select[Thread, Client, Person]:
    return (
        select(Thread, Client, Person)
        .join(Client, and_(Client.id == Thread.client_id, Client.tenant_id == Thread.tenant_id))
        .outerjoin(Person, Person.id == Thread.assignee_id)
        .where(Thread.tenant_id == ctx.tenant_id)
    )


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


async def list_threads(
    ctx: TenantContext, uow: UnitOfWork, page: PageRequest, filters: ThreadFilter | None = None
) -> Page[ThreadOut]:
    """The inbox: threads of this context, most recent activity first."""
    ctx.require(READ)
    f = filters or ThreadFilter()
    stmt = _thread_select(ctx)
    if f.status:
        stmt = stmt.where(Thread.status == f.status)
    if f.assignee == "none":
        stmt = stmt.where(Thread.assignee_id.is_(None))
    elif f.assignee == "me":
        stmt = stmt.where(Thread.assignee_id == ctx.person_id)
    elif f.assignee:
        person_id = (
            await uow.session.execute(text("SELECT platform.person_id_by_slug(:s)"), {"s": f.assignee})
        ).scalar_one_or_none()
        stmt = stmt.where(Thread.assignee_id == person_id)
    if f.label:
        stmt = stmt.where(Thread.labels.contains([f.label]))
    if f.client_id:
        stmt = stmt.where(Thread.client_id == f.client_id)
    if f.channel:
        stmt = stmt.where(Thread.channel == f.channel)
    if f.unread is True:
        stmt = stmt.where(Thread.unread_count > 0)
    elif f.unread is False:
        stmt = stmt.where(Thread.unread_count == 0)
    if f.q:
        query = func.to_tsquery(literal_column("'simple'::regconfig"), _tsquery(f.q))
        pattern = "%" + f.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        in_messages = select(Message.thread_id).where(
            Message.tenant_id == ctx.tenant_id, Message.search.op("@@")(query)
        )
        stmt = stmt.where(
            or_(
                Thread.search.op("@@")(query),
                Thread.id.in_(in_messages),
                Client.name.ilike(pattern),
                Client.email.ilike(pattern),
            )
        )
    if page.cursor:
        after = decode_cursor(page.cursor, 2)
        stmt = stmt.where(tuple_(Thread.last_activity_at, Thread.id) < tuple_(*after))
    stmt = stmt.order_by(Thread.last_activity_at.desc(), Thread.id.desc()).limit(page.limit + 1)
    rows = (await uow.session.execute(stmt)).all()
    items = [_thread_out(t, c, p) for t, c, p in rows[: page.limit]]
    more = len(rows) > page.limit
    return Page[ThreadOut](
        items=items,
        next_cursor=encode_cursor(items[-1].last_activity_at, items[-1].id) if more else None,
    )


async def _thread_row(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, *, lock: bool = False
) -> tuple[Thread, Client, Person | None]:
    stmt = _thread_select(ctx).where(Thread.id == thread_id)
    if lock:
        stmt = stmt.with_for_update(of=Thread)
    row = (await uow.session.execute(stmt)).one_or_none()
    if row is None:
        raise NotFound(
            "no such thread in this context",
            code="thread_not_found",
            hint="list threads ([[messaging.list_threads]]) in the right context",
        )
    return row[0], row[1], row[2]


async def get_thread(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, page: PageRequest
) -> ThreadDetailOut:
    """A thread with its messages (newest first, paginated) and its pending drafts."""
    ctx.require(READ)
    thread, client, assignee = await _thread_row(ctx, uow, thread_id)
    stmt = select(Message).where(Message.thread_id == thread.id, Message.tenant_id == ctx.tenant_id)
    if page.cursor:
        after = decode_cursor(page.cursor, 2)
        stmt = stmt.where(tuple_(Message.occurred_at, Message.id) < tuple_(*after))
    stmt = stmt.order_by(Message.occurred_at.desc(), Message.id.desc()).limit(page.limit + 1)
    messages = list((await uow.session.execute(stmt)).scalars())
    drafts = list(
        (
            await uow.session.execute(
                select(Draft)
                .where(
                    Draft.thread_id == thread.id, Draft.tenant_id == ctx.tenant_id, Draft.status == "pending"
                )
                .order_by(Draft.created_at.desc(), Draft.id.desc())
                .limit(10)
            )
        ).scalars()
    )
    shown = messages[: page.limit]
    return ThreadDetailOut(
        thread=_thread_out(thread, client, assignee),
        messages=[_message_out(m) for m in shown],
        next_cursor=encode_cursor(shown[-1].occurred_at, shown[-1].id)
        if len(messages) > page.limit
        else None,
        pending_drafts=[_draft_out(d) for d in drafts],
    )


# --- threads: writing ---------------------------------------------------------------------------------


async def _client_in_context(ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID) -> Client:
    client = (
        await uow.session.execute(
            select(Client).where(Client.id == client_id, Client.tenant_id == ctx.tenant_id)
        )
    ).scalar_one_or_none()
    if client is None:
        raise NotFound(
            "no such client in this context",
            code="client_not_found",
            hint="find the client with [[tenancy.list_clients]] in the same context",
            errors=[FieldIssue("client_id", "unknown client", "not_found")],
        )
    return client


async def _new_thread(
    ctx: TenantContext,
    uow: UnitOfWork,
    *,
    client_id: uuid.UUID,
    channel: str,
    subject: str,
    agent_mode: str,
    external_key: str | None = None,
    last_activity_at: dt.datetime | None = None,
) -> Thread:
    thread = (
        await uow.session.execute(
            insert(Thread)
            .values(
                id=uuid.uuid4(),
                person_id=ctx.person_id,
                org_id=ctx.org_id,
                client_id=client_id,
                channel=channel,
                subject=subject[:500],
                agent_mode=agent_mode,
                external_key=external_key,
                last_activity_at=last_activity_at or func.now(),
            )
            .returning(Thread)
        )
    ).scalar_one()
    uow.emit(
        "messaging/thread.created",
        {"thread_id": thread.id, "client_id": client_id, "channel": channel, "agent_mode": agent_mode},
    )
    return thread


@idempotent_operation("messaging.thread_create")
async def create_thread(
    ctx: TenantContext, uow: UnitOfWork, data: ThreadIn, idempotency_key: str | None = None
) -> ThreadDetailOut:
    """Start a conversation with a client of this context, optionally sending a first message."""
    ctx.require(WRITE)
    _check_channel(uow, data.channel)
    if data.agent_mode is not None:
        _require_person(ctx, "choosing a thread's agent mode", "agent_mode_human_only")
    client = await _client_in_context(ctx, uow, data.client_id)
    cfg = await _settings_row(ctx, uow)
    mode = data.agent_mode or (cfg.default_agent_mode if cfg else "draft_only")
    if data.body is not None:
        _agent_may(ctx, mode, "send")
        _require_deliverable(uow, cfg, data.channel, client)
    thread = await _new_thread(
        ctx, uow, client_id=client.id, channel=data.channel, subject=data.subject, agent_mode=mode
    )
    messages: list[MessageOut] = []
    if data.body is not None:
        message, thread = await _append_outbound(ctx, uow, thread, data.body, data.attachments)
        messages.append(_message_out(message))
    return ThreadDetailOut(
        thread=_thread_out(thread, client, None), messages=messages, next_cursor=None, pending_drafts=[]
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
        _require_person(ctx, "changing a thread's agent mode", "agent_mode_human_only")
    thread, client, current_assignee = await _thread_row(ctx, uow, thread_id, lock=True)
    if if_match is not None:
        require_match(if_match, _thread_out(thread, client, current_assignee), what="thread")
    changes: dict[str, Any] = {}
    status = data.status if "status" in given else ("snoozed" if data.snoozed_until else None)
    if status is not None:
        until = data.snoozed_until if status == "snoozed" else None
        if status == "snoozed":
            now = dt.datetime.now(dt.UTC)
            if until is None or until.tzinfo is None or until <= now:
                raise ValidationFailed(
                    "snoozing needs `snoozed_until`: a future time with a timezone",
                    code="snooze_time_required",
                    hint="e.g. 2026-12-01T09:00:00Z; a client reply reopens the thread earlier",
                    errors=[FieldIssue("snoozed_until", "a future time with a timezone")],
                )
        elif data.snoozed_until is not None:
            raise ValidationFailed(
                "`snoozed_until` only goes with status `snoozed`",
                code="snooze_time_unexpected",
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
    assignee: Person | None = None
    if "assignee" in given:
        new_id = await _assignee_id(ctx, uow, data.assignee) if data.assignee else None
        if new_id != thread.assignee_id:
            uow.emit(
                "messaging/thread.assigned",
                {"thread_id": thread.id, "assignee_id": new_id, "previous_assignee_id": thread.assignee_id},
            )
            thread.assignee_id = new_id
            changes["assignee"] = str(new_id) if new_id else None
    labels = list(thread.labels or [])
    if data.labels is not None:
        labels = sorted(set(data.labels))
    else:
        labels = sorted((set(labels) | set(data.add_labels)) - set(data.remove_labels))
    if len(labels) > 20:
        raise ValidationFailed(
            "a thread has at most 20 labels", code="too_many_labels", errors=[FieldIssue("labels", "max 20")]
        )
    if labels != sorted(thread.labels or []):
        thread.labels = labels
        changes["labels"] = labels
    if data.agent_mode is not None and data.agent_mode != thread.agent_mode:
        changes["agent_mode"] = {"from": thread.agent_mode, "to": data.agent_mode}
        thread.agent_mode = data.agent_mode
    if changes:
        thread.updated_at = dt.datetime.now(dt.UTC)
        await uow.session.flush()
        uow.emit("messaging/thread.updated", {"thread_id": thread.id, "changes": changes})
    if thread.assignee_id is not None:
        assignee = await uow.session.get(Person, thread.assignee_id)
    return _thread_out(thread, client, assignee)


async def mark_read(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, data: ReadIn) -> ThreadOut:
    """Read markers: mark the client's messages read (up to one of them), or the newest unread."""
    ctx.require(WRITE)
    thread, client, assignee = await _thread_row(ctx, uow, thread_id, lock=True)
    inbound = and_(
        Message.thread_id == thread.id, Message.tenant_id == ctx.tenant_id, Message.direction == "in"
    )
    bound = None
    if data.up_to_message_id is not None:
        bound = (
            await uow.session.execute(
                select(Message.occurred_at, Message.id).where(
                    Message.id == data.up_to_message_id,
                    Message.thread_id == thread.id,
                    Message.tenant_id == ctx.tenant_id,
                )
            )
        ).one_or_none()
        if bound is None:
            raise NotFound(
                "no such message in this thread",
                code="message_not_found",
                hint="read the thread's messages with [[messaging.get_thread]]",
                errors=[FieldIssue("up_to_message_id", "not in this thread", "not_found")],
            )
    if data.unread:
        newest = select(Message.id).where(inbound)
        if bound is not None:
            newest = newest.where(tuple_(Message.occurred_at, Message.id) <= tuple_(*bound))
        newest = newest.order_by(Message.occurred_at.desc(), Message.id.desc()).limit(1)
        await uow.session.execute(
            update(Message).where(Message.id == newest.scalar_subquery()).values(read_at=None)
        )
    else:
        stmt = update(Message).where(inbound, Message.read_at.is_(None)).values(read_at=func.now())
        if bound is not None:
            stmt = stmt.where(tuple_(Message.occurred_at, Message.id) <= tuple_(*bound))
        await uow.session.execute(stmt)
    unread = (
        select(func.count()).select_from(Message).where(inbound, Message.read_at.is_(None)).scalar_subquery()
    )
    thread = (
        await uow.session.execute(
            update(Thread)
            .where(Thread.id == thread.id, Thread.tenant_id == ctx.tenant_id)
            .values(unread_count=unread)
            .returning(Thread),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    return _thread_out(thread, client, assignee)


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


# --- outbound -------------------------------------------------------------------------------------------


async def _append_outbound(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread: Thread,
    body: str,
    attachments: list[AttachmentIn],
    *,
    draft_id: uuid.UUID | None = None,
    author_kind: str | None = None,
    status: str | None = None,
) -> tuple[Message, Thread]:
    """Queue an outbound message and move the thread on; the delivery handler takes it from the
    `messaging/message.sent` event. A person replying has read what came before."""
    kind = author_kind or ("agent" if is_agent(ctx) else "person")
    message = (
        await uow.session.execute(
            insert(Message)
            .values(
                id=uuid.uuid4(),
                person_id=ctx.person_id,
                org_id=ctx.org_id,
                thread_id=thread.id,
                direction="out",
                channel=thread.channel,
                author_kind=kind,
                author_person_id=ctx.person_id,
                author_api_key_id=ctx.principal.api_key_id,
                body=body,
                attachments=_attachments_in(attachments),
                delivery_status="queued",
                draft_id=draft_id,
            )
            .returning(Message)
        )
    ).scalar_one()
    values: dict[str, Any] = {
        "message_count": Thread.message_count + 1,
        "last_activity_at": func.greatest(Thread.last_activity_at, message.occurred_at),
        "preview": _preview(body, attachments),
        "updated_at": func.now(),
    }
    person_reads = kind == "person" and thread.unread_count > 0
    if person_reads:
        await uow.session.execute(
            update(Message)
            .where(
                Message.thread_id == thread.id,
                Message.tenant_id == ctx.tenant_id,
                Message.direction == "in",
                Message.read_at.is_(None),
            )
            .values(read_at=func.now())
        )
        values["unread_count"] = 0
    if status is not None and status != thread.status:
        values["status"], values["snoozed_until"] = status, None
        uow.emit(
            "messaging/thread.status_changed",
            {"thread_id": thread.id, "from": thread.status, "to": status, "reason": "sent"},
        )
    updated = (
        await uow.session.execute(
            update(Thread)
            .where(Thread.id == thread.id, Thread.tenant_id == ctx.tenant_id)
            .values(**values)
            .returning(Thread),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    uow.emit(
        "messaging/message.sent",
        {
            "message_id": message.id,
            "thread_id": thread.id,
            "client_id": thread.client_id,
            "channel": thread.channel,
            "author_kind": kind,
            "draft_id": draft_id,
        },
    )
    return message, updated


async def _thread_for_send(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID
) -> tuple[Thread, Client, MessagingSettings | None]:
    """The thread, its client and the context's settings, in one statement."""
    row = (
        await uow.session.execute(
            select(Thread, Client, MessagingSettings)
            .join(Client, and_(Client.id == Thread.client_id, Client.tenant_id == Thread.tenant_id))
            .outerjoin(MessagingSettings, MessagingSettings.tenant_id == Thread.tenant_id)
            .where(Thread.id == thread_id, Thread.tenant_id == ctx.tenant_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            "no such thread in this context",
            code="thread_not_found",
            hint="list threads ([[messaging.list_threads]]) in the right context",
        )
    return row[0], row[1], row[2]


@idempotent_operation("messaging.send")
async def send_message(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread_id: uuid.UUID,
    data: SendIn,
    idempotency_key: str | None = None,
) -> MessageOut:
    """Send a message to the thread's client on the thread's channel (delivered after commit)."""
    ctx.require(WRITE)
    thread, client, cfg = await _thread_for_send(ctx, uow, thread_id)
    _agent_may(ctx, thread.agent_mode, "send")
    _require_deliverable(uow, cfg, thread.channel, client)
    message, _ = await _append_outbound(ctx, uow, thread, data.body, data.attachments, status=data.status)
    return _message_out(message)


async def retry_delivery(ctx: TenantContext, uow: UnitOfWork, message_id: uuid.UUID) -> MessageOut:
    """Queue a failed outbound message for delivery again (same message, same idempotency key
    for the peer, so a peer that did get it the first time does not send it twice)."""
    ctx.require(WRITE)
    row = (
        await uow.session.execute(
            select(Message, Thread.agent_mode)
            .join(Thread, Thread.id == Message.thread_id)
            .where(Message.id == message_id, Message.tenant_id == ctx.tenant_id)
        )
    ).one_or_none()
    if row is None:
        raise NotFound(
            "no such message in this context",
            code="message_not_found",
            hint="read the thread's messages with [[messaging.get_thread]]",
        )
    message, mode = row
    _agent_may(ctx, mode, "send")
    requeued = (
        await uow.session.execute(
            update(Message)
            .where(
                Message.id == message.id,
                Message.tenant_id == ctx.tenant_id,
                Message.delivery_status == "failed",
            )
            .values(delivery_status="queued", failure_reason=None)
            .returning(Message),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()
    if requeued is None:
        raise Conflict(
            "only a failed outbound message can be retried; this one is "
            + (message.delivery_status or "inbound"),
            code="message_not_failed",
            extra={"delivery_status": message.delivery_status},
        )
    uow.emit(
        "messaging/message.retried",
        {"message_id": message.id, "thread_id": message.thread_id, "channel": message.channel},
    )
    return _message_out(requeued)


# --- inbound -------------------------------------------------------------------------------------------


async def _advisory_lock(uow: UnitOfWork, key: str) -> None:
    await uow.session.execute(text("SELECT pg_advisory_xact_lock(hashtextextended(:k, 0))"), {"k": key})


def _prefixed(err: ValidationFailed, prefix: str) -> ValidationFailed:
    err.errors = [FieldIssue(f"{prefix}{e.field}", e.message, e.code) for e in err.errors]
    return err


async def ingest(ctx: TenantContext, uow: UnitOfWork, data: InboundIn | InboundBatchIn) -> IngestOut:
    """Inbound messages from a channel peer (one or a batch, all or nothing). Idempotent on
    (channel, external_id): a message already ingested is reported as a duplicate, unchanged."""
    ctx.require(INGEST)
    items = data.messages if isinstance(data, InboundBatchIn) else [data]
    cfg = await _settings_row(ctx, uow)
    results: list[IngestItemOut] = []
    for i, item in enumerate(items):
        prefix = f"messages.{i}." if isinstance(data, InboundBatchIn) else ""
        try:
            results.append(await _ingest_one(ctx, uow, cfg, item))
        except ValidationFailed as err:
            raise _prefixed(err, prefix) from err
    created = sum(r.outcome == "created" for r in results)
    return IngestOut(results=results, created=created, duplicates=len(results) - created)


async def _ingest_one(
    ctx: TenantContext, uow: UnitOfWork, cfg: MessagingSettings | None, item: InboundIn
) -> IngestItemOut:
    channel = _check_channel(uow, item.channel)
    tenant = ctx.tenant_id
    # Serialize ingests of one external id: a peer retrying in parallel makes one message.
    await _advisory_lock(uow, f"mext:{tenant}:{channel}:{item.external_id}")
    existing = (
        await uow.session.execute(
            select(Message.id, Message.thread_id, Thread.client_id)
            .join(Thread, Thread.id == Message.thread_id)
            .where(
                Message.tenant_id == tenant,
                Message.channel == channel,
                Message.external_id == item.external_id,
            )
        )
    ).one_or_none()
    if existing is not None:
        return IngestItemOut(
            external_id=item.external_id,
            outcome="duplicate",
            message_id=existing[0],
            thread_id=existing[1],
            client_id=existing[2],
            client_created=False,
            thread_created=False,
        )
    try:
        client, client_created = await find_or_create_client(
            ctx, uow, name=item.client_name, email=item.client_email, phone=item.client_phone
        )
    except ValidationFailed as err:
        err.errors = [FieldIssue(f"client_{e.field}", e.message, e.code) for e in err.errors]
        raise
    now = dt.datetime.now(dt.UTC)
    occurred = min(item.occurred_at or now, now)
    thread = await _thread_for_inbound(ctx, uow, client.id, channel, item)
    thread_created = thread is None
    if thread is None:
        thread = await _new_thread(
            ctx,
            uow,
            client_id=client.id,
            channel=channel,
            subject=item.subject,
            agent_mode=cfg.default_agent_mode if cfg else "draft_only",
            external_key=item.thread_key,
            last_activity_at=occurred,
        )
    is_new = thread_created or occurred >= thread.last_activity_at - BACKFILL_SLACK
    message = (
        await uow.session.execute(
            insert(Message)
            .values(
                id=uuid.uuid4(),
                person_id=ctx.person_id,
                org_id=ctx.org_id,
                thread_id=thread.id,
                direction="in",
                channel=channel,
                author_kind="client",
                body=item.body,
                attachments=_attachments_in(item.attachments),
                external_id=item.external_id,
                occurred_at=occurred,
                # Imported history is not news: it arrives read.
                read_at=None if is_new else now,
            )
            .returning(Message)
        )
    ).scalar_one()
    values: dict[str, Any] = {
        "message_count": Thread.message_count + 1,
        "last_activity_at": func.greatest(Thread.last_activity_at, occurred),
        "last_inbound_at": func.greatest(func.coalesce(Thread.last_inbound_at, occurred), occurred),
        "updated_at": func.now(),
    }
    if is_new:
        values["unread_count"] = Thread.unread_count + 1
        values["preview"] = _preview(item.body, item.attachments)
        # A client reply always reopens, whatever the status (pending, snoozed, closed).
        if thread.status != "open":
            values["status"], values["snoozed_until"] = "open", None
            uow.emit(
                "messaging/thread.status_changed",
                {"thread_id": thread.id, "from": thread.status, "to": "open", "reason": "client_replied"},
            )
    if item.subject and not thread.subject:
        values["subject"] = item.subject[:500]
    await uow.session.execute(
        update(Thread).where(Thread.id == thread.id, Thread.tenant_id == tenant).values(**values)
    )
    uow.emit(
        "messaging/message.received",
        {
            "message_id": message.id,
            "thread_id": thread.id,
            "client_id": client.id,
            "channel": channel,
            "external_id": item.external_id,
        },
    )
    if is_new:
        await _supersede_drafts(ctx, uow, thread.id, message.id, occurred)
    return IngestItemOut(
        external_id=item.external_id,
        outcome="created",
        message_id=message.id,
        thread_id=thread.id,
        client_id=client.id,
        client_created=client_created,
        thread_created=thread_created,
    )


async def _thread_for_inbound(
    ctx: TenantContext, uow: UnitOfWork, client_id: uuid.UUID, channel: str, item: InboundIn
) -> Thread | None:
    """The thread an inbound message belongs to: the one the peer names, else the channel's
    conversation (`thread_key`), else the client's latest thread on this channel. None = new."""
    tenant = ctx.tenant_id
    if item.thread_id is not None:
        thread = (
            await uow.session.execute(
                select(Thread)
                .where(Thread.id == item.thread_id, Thread.tenant_id == tenant)
                .with_for_update()
            )
        ).scalar_one_or_none()
        if thread is None or thread.client_id != client_id or thread.channel != channel:
            raise ValidationFailed(
                "thread_id names no thread of this client on this channel in this context",
                code="thread_mismatch",
                hint="omit thread_id (the thread is then found by thread_key or the client)",
                errors=[FieldIssue("thread_id", "not this client's thread on this channel", "mismatch")],
            )
        return thread
    # Each client has their own thread even in a group conversation: messages are attributed
    # to the thread's client. The lock makes two first messages of one conversation one thread.
    await _advisory_lock(uow, f"mthread:{tenant}:{channel}:{client_id}:{item.thread_key or ''}")
    if item.thread_key:
        stmt = select(Thread).where(
            Thread.tenant_id == tenant,
            Thread.channel == channel,
            Thread.client_id == client_id,
            Thread.external_key == item.thread_key,
        )
    else:
        stmt = (
            select(Thread)
            .where(Thread.tenant_id == tenant, Thread.channel == channel, Thread.client_id == client_id)
            .order_by(Thread.last_activity_at.desc(), Thread.id.desc())
            .limit(1)
        )
    return (await uow.session.execute(stmt.with_for_update())).scalar_one_or_none()


async def _supersede_drafts(
    ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID, message_id: uuid.UUID, occurred: dt.datetime
) -> None:
    """Pending drafts answer a conversation that has moved on: a newer client message makes them
    superseded (generate or write a new one)."""
    superseded = (
        await uow.session.execute(
            update(Draft)
            .where(
                Draft.thread_id == thread_id,
                Draft.tenant_id == ctx.tenant_id,
                Draft.status == "pending",
                Draft.created_at <= occurred + BACKFILL_SLACK,
            )
            .values(status="superseded", superseded_by_message_id=message_id, updated_at=func.now())
            .returning(Draft.id)
        )
    ).scalars()
    for draft_id in superseded:
        uow.emit(
            "messaging/draft.superseded",
            {"draft_id": draft_id, "thread_id": thread_id, "message_id": message_id},
        )


# --- drafts ---------------------------------------------------------------------------------------------


async def list_drafts(
    ctx: TenantContext,
    uow: UnitOfWork,
    page: PageRequest,
    thread_id: uuid.UUID | None = None,
    status: str | None = "pending",
) -> Page[DraftOut]:
    """Drafts of this context, newest first (default: the pending ones awaiting a person)."""
    ctx.require(READ)
    stmt = select(Draft).where(Draft.tenant_id == ctx.tenant_id)
    if thread_id is not None:
        stmt = stmt.where(Draft.thread_id == thread_id)
    if status:
        stmt = stmt.where(Draft.status == status)
    if page.cursor:
        after = decode_cursor(page.cursor, 2)
        stmt = stmt.where(tuple_(Draft.created_at, Draft.id) < tuple_(*after))
    rows = list(
        (
            await uow.session.execute(
                stmt.order_by(Draft.created_at.desc(), Draft.id.desc()).limit(page.limit + 1)
            )
        ).scalars()
    )
    shown = rows[: page.limit]
    return Page[DraftOut](
        items=[_draft_out(d) for d in shown],
        next_cursor=encode_cursor(shown[-1].created_at, shown[-1].id) if len(rows) > page.limit else None,
    )


async def get_draft(ctx: TenantContext, uow: UnitOfWork, draft_id: uuid.UUID) -> DraftOut:
    ctx.require(READ)
    return _draft_out(await _draft(ctx, uow, draft_id))


async def _draft(ctx: TenantContext, uow: UnitOfWork, draft_id: uuid.UUID) -> Draft:
    draft = (
        await uow.session.execute(select(Draft).where(Draft.id == draft_id, Draft.tenant_id == ctx.tenant_id))
    ).scalar_one_or_none()
    if draft is None:
        raise NotFound(
            "no such draft in this context",
            code="draft_not_found",
            hint="list drafts with [[messaging.list_drafts]]",
        )
    return draft


async def _latest_inbound_id(ctx: TenantContext, uow: UnitOfWork, thread_id: uuid.UUID) -> uuid.UUID | None:
    return (
        await uow.session.execute(
            select(Message.id)
            .where(
                Message.thread_id == thread_id, Message.tenant_id == ctx.tenant_id, Message.direction == "in"
            )
            .order_by(Message.occurred_at.desc(), Message.id.desc())
            .limit(1)
        )
    ).scalar_one_or_none()


async def _insert_draft(ctx: TenantContext, uow: UnitOfWork, thread: Thread, **values: Any) -> Draft:
    draft = (
        await uow.session.execute(
            insert(Draft)
            .values(
                id=uuid.uuid4(),
                person_id=ctx.person_id,
                org_id=ctx.org_id,
                thread_id=thread.id,
                created_by_person_id=ctx.person_id,
                created_by_api_key_id=ctx.principal.api_key_id,
                reply_to_message_id=await _latest_inbound_id(ctx, uow, thread.id),
                **values,
            )
            .returning(Draft)
        )
    ).scalar_one()
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
    thread, _, _ = await _thread_row(ctx, uow, thread_id)
    _agent_may(ctx, thread.agent_mode, "draft")
    draft = await _insert_draft(
        ctx, uow, thread, body=data.body, created_by_kind="agent" if is_agent(ctx) else "person"
    )
    return _draft_out(draft)


def _history(messages: list[Message], budget: int) -> tuple[list[dict[str, Any]], bool]:
    """The newest messages that fit the budget (characters of text), oldest first."""
    picked: list[dict[str, Any]] = []
    used = 0
    for m in messages:  # newest first
        body = m.body
        if used + len(body) > budget:
            if picked:
                return list(reversed(picked)), True
            body = body[-budget:]  # the newest message alone is too long: keep its end
        used += len(body)
        picked.append(
            {
                "role": "client" if m.direction == "in" else "provider",
                "author_kind": m.author_kind,
                "text": body,
                "attachments": len(m.attachments or []),
                "at": m.occurred_at.isoformat(),
            }
        )
    return list(reversed(picked)), False


DRAFT_GENERATE = "messaging.draft_generate"


async def generate_draft(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread_id: uuid.UUID,
    data: DraftGenerateIn,
    idempotency_key: str | None = None,
) -> DraftOut:
    """Ask the drafting peer for a reply. Orchestration only: the prompt is assembled here
    (recent history within a budget, the provider's profile and tone) and sent over HTTP; the
    peer's text becomes a pending draft. Nothing is written unless the peer answers well.

    A model may think for many seconds: no connection or transaction is held meanwhile
    (`uow.released`). So the key is claimed only when the draft is written; a retry after
    success is answered from the stored result without asking the peer again, and concurrent
    retries may each ask it (with the same idempotency key) but write one draft."""
    request = {"thread_id": thread_id, "data": data}
    done = await idempotency.replay(ctx, uow, idempotency_key, DRAFT_GENERATE, request, DraftOut)
    if done is not None:
        return done
    ctx.require(WRITE)
    thread, client, _ = await _thread_row(ctx, uow, thread_id)
    _agent_may(ctx, thread.agent_mode, "draft")
    cfg = await _settings_row(ctx, uow)
    settings = uow.db.settings
    url = (cfg.draft_peer_url if cfg else None) or settings.messaging_draft_peer_url
    if not url:
        raise Unavailable(
            "no drafting peer is configured for this context",
            code="draft_peer_not_configured",
            hint="write the draft yourself ([[messaging.create_draft]]), or configure a drafting peer "
            "(ATLILITH_MESSAGING_DRAFT_PEER_URL, or `draft_peer_url` in [[messaging.update_settings]])",
        )
    budget = settings.messaging_prompt_budget_chars
    recent = list(
        (
            await uow.session.execute(
                select(Message)
                .where(Message.thread_id == thread.id, Message.tenant_id == ctx.tenant_id)
                .order_by(Message.occurred_at.desc(), Message.id.desc())
                .limit(200)
            )
        ).scalars()
    )
    history, truncated = _history(recent, budget)
    profile = ProfileIn.model_validate(cfg.profile if cfg else {}).model_dump(exclude_none=True)
    prompt = {
        "task": "draft_reply",
        "thread": {"id": str(thread.id), "channel": thread.channel, "subject": thread.subject},
        "client": {"name": client.name},
        "provider": profile,
        "history": history,
        "history_truncated": truncated,
        "instructions": data.instructions,
        "max_chars": MAX_BODY_CHARS,
        # Said to the peer as well: what the client wrote is material, never instructions.
        "untrusted": ["thread.subject", "client.name", "history[role=client].text"],
    }
    prompt_hash = hashlib.sha256(peers.canonical_json(prompt)).hexdigest()
    try:
        async with uow.released():
            reply = await peers.post_json(
                settings,
                url,
                prompt,
                event="messaging/draft.generate",
                idempotency_key=idempotency_key,
                retries=settings.messaging_peer_retries,
            )
    except peers.PeerError as err:
        if err.permanent:
            raise BadGateway(
                f"the drafting peer refused: {err.reason}",
                code="draft_peer_failed",
                hint="nothing was saved; write the draft yourself ([[messaging.create_draft]]) or "
                "retry later",
            ) from err
        raise Unavailable(
            f"the drafting peer is unavailable: {err.reason}",
            code="draft_peer_unavailable",
            hint="nothing was saved; retry in a minute, or write the draft yourself "
            "([[messaging.create_draft]])",
        ) from err
    body = reply.data.get("body")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY_CHARS:
        raise BadGateway(
            "the drafting peer's answer has no usable `body`",
            code="draft_peer_bad_response",
            hint="nothing was saved; retry, or write the draft yourself ([[messaging.create_draft]])",
        )
    model = reply.data.get("model")

    async def write() -> DraftOut:
        # Read again: while the peer thought, the thread may have gone or been set to `off`.
        current, _, _ = await _thread_row(ctx, uow, thread_id, lock=True)
        _agent_may(ctx, current.agent_mode, "draft")
        draft = await _insert_draft(
            ctx,
            uow,
            current,
            body=body.strip(),
            created_by_kind="peer",
            peer=peers.peer_label(url),
            peer_model=str(model)[:200] if model else None,
            latency_ms=reply.latency_ms,
            prompt_hash=prompt_hash,
        )
        log.info("draft_generated", thread_id=str(current.id), latency_ms=reply.latency_ms)
        return _draft_out(draft)

    return await idempotency.idempotent(ctx, uow, idempotency_key, DRAFT_GENERATE, request, DraftOut, write)


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
    _require_person(ctx, "approving a draft", "human_approval_required")
    draft = await _draft(ctx, uow, draft_id)
    if draft.status != "pending":
        raise _not_pending(draft)
    thread, client, cfg = await _thread_for_send(ctx, uow, draft.thread_id)
    _require_deliverable(uow, cfg, thread.channel, client)
    body = data.body if data.body is not None else draft.body
    claimed = (
        await uow.session.execute(
            update(Draft)
            .where(Draft.id == draft.id, Draft.tenant_id == ctx.tenant_id, Draft.status == "pending")
            .values(
                status="approved",
                decided_by_person_id=ctx.person_id,
                decided_at=func.now(),
                edited=body != draft.body,
                updated_at=func.now(),
            )
            .returning(Draft.id)
        )
    ).scalar_one_or_none()
    if claimed is None:  # another approval (or a new client message) won the row
        await uow.session.refresh(draft)
        raise _not_pending(draft)
    message, _ = await _append_outbound(
        ctx, uow, thread, body, [], draft_id=draft.id, author_kind="person", status=data.status
    )
    approved = (
        await uow.session.execute(
            update(Draft).where(Draft.id == draft.id).values(sent_message_id=message.id).returning(Draft),
            execution_options={"populate_existing": True},
        )
    ).scalar_one()
    uow.emit(
        "messaging/draft.approved",
        {"draft_id": draft.id, "thread_id": thread.id, "message_id": message.id, "edited": approved.edited},
    )
    return DraftApprovedOut(draft=_draft_out(approved), message=_message_out(message))


async def reject_draft(
    ctx: TenantContext, uow: UnitOfWork, draft_id: uuid.UUID, data: DraftRejectIn
) -> DraftOut:
    """Reject a pending draft with a reason (a person; an agent only withdraws its own)."""
    ctx.require(WRITE)
    draft = await _draft(ctx, uow, draft_id)
    own = ctx.principal.api_key_id is not None and draft.created_by_api_key_id == ctx.principal.api_key_id
    if is_agent(ctx) and not own:
        _require_person(ctx, "rejecting another's draft", "human_approval_required")
    rejected = (
        await uow.session.execute(
            update(Draft)
            .where(Draft.id == draft.id, Draft.tenant_id == ctx.tenant_id, Draft.status == "pending")
            .values(
                status="rejected",
                decided_by_person_id=ctx.person_id,
                decided_at=func.now(),
                rejection_reason=data.reason,
                updated_at=func.now(),
            )
            .returning(Draft),
            execution_options={"populate_existing": True},
        )
    ).scalar_one_or_none()
    if rejected is None:
        await uow.session.refresh(draft)
        raise _not_pending(draft)
    uow.emit(
        "messaging/draft.rejected",
        {"draft_id": draft.id, "thread_id": draft.thread_id, "by_agent": is_agent(ctx)},
    )
    return _draft_out(rejected)
