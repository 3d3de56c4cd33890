"""Drafts written by the drafting peer: the prompt (recent history within a budget, the
provider's profile) is assembled here and sent over HTTP; the reply becomes a pending draft."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from sqlalchemy import select

from core import idempotency
from core.context import TenantContext
from core.errors import Unavailable
from core.messaging import peers
from core.messaging.drafts import insert_draft
from core.messaging.models import Message, MessagingSettings, Thread
from core.messaging.policy import WRITE, BadGateway, agent_may
from core.messaging.presenters import draft_out
from core.messaging.queries import settings_row, thread_row
from core.messaging.schemas import MAX_BODY_CHARS, DraftGenerateIn, DraftOut, ProfileIn
from core.observability import SpanKind, annotate, get_logger, trace
from core.scoping import in_context
from core.tenancy.models import Client
from core.uow import UnitOfWork

log = get_logger("atlilith.messaging")


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
    thread, client, _ = await thread_row(ctx, uow, thread_id)
    agent_may(ctx, thread.agent_mode, "draft")
    cfg = await settings_row(ctx, uow)
    url = _draft_peer_url(uow, cfg)
    with trace(name="draft prompt", component="messaging", action="draft_generate"):
        prompt = await _prompt(ctx, uow, thread, client, cfg, data)
        encoded = peers.canonical_json(prompt)
        annotate(**_prompt_sizes(prompt, encoded))
    prompt_hash = hashlib.sha256(encoded).hexdigest()
    reply = await _ask_peer(uow, url, prompt, idempotency_key)
    body = _reply_body(reply)
    model = reply.data.get("model")

    async def write() -> DraftOut:
        # Read again: while the peer thought, the thread may have gone or been set to `off`.
        current, _, _ = await thread_row(ctx, uow, thread_id, lock=True)
        agent_may(ctx, current.agent_mode, "draft")
        draft = await insert_draft(
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
        return draft_out(draft)

    return await idempotency.idempotent(ctx, uow, idempotency_key, DRAFT_GENERATE, request, DraftOut, write)


def _draft_peer_url(uow: UnitOfWork, cfg: MessagingSettings | None) -> str:
    """The context's drafting peer, else the platform's."""
    url = (cfg.draft_peer_url if cfg else None) or uow.db.settings.messaging_draft_peer_url
    if not url:
        raise Unavailable(
            "no drafting peer is configured for this context",
            code="draft_peer_not_configured",
            hint="write the draft yourself ([[messaging.create_draft]]), or configure a drafting peer "
            "(ATLILITH_MESSAGING_DRAFT_PEER_URL, or `draft_peer_url` in [[messaging.update_settings]])",
        )
    return url


async def _prompt(
    ctx: TenantContext,
    uow: UnitOfWork,
    thread: Thread,
    client: Client,
    cfg: MessagingSettings | None,
    data: DraftGenerateIn,
) -> dict[str, Any]:
    """What the peer is asked: the thread's recent history within the budget, the provider's
    profile and the caller's instructions."""
    recent = list(
        (
            await uow.session.execute(
                select(Message)
                .where(Message.thread_id == thread.id, in_context(Message, ctx))
                .order_by(Message.occurred_at.desc(), Message.id.desc())
                .limit(200)
            )
        ).scalars()
    )
    history, truncated = _history(recent, uow.db.settings.messaging_prompt_budget_chars)
    profile = ProfileIn.model_validate(cfg.profile if cfg else {}).model_dump(exclude_none=True)
    return {
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


async def _ask_peer(
    uow: UnitOfWork, url: str, prompt: dict[str, Any], idempotency_key: str | None
) -> peers.PeerReply:
    """The peer's reply, with no connection held while it thinks; a failure saves nothing."""
    settings = uow.db.settings
    attributes = {"atlilith.peer": peers.peer_label(url), "gen_ai.operation.name": "chat"}
    try:
        with trace(name="draft peer call", kind=SpanKind.CLIENT, attributes=attributes):
            async with uow.released():
                reply = await peers.post_json(
                    settings,
                    url,
                    prompt,
                    event="messaging/draft.generate",
                    idempotency_key=idempotency_key,
                    retries=settings.messaging_peer_retries,
                )
            annotate(**_reply_sizes(reply))
            return reply
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


def _prompt_sizes(prompt: dict[str, Any], encoded: bytes) -> dict[str, int | bool]:
    """What a trace may say of a prompt: sizes, never the text (client messages are theirs)."""
    history = prompt["history"]
    return {
        "atlilith.prompt.bytes": len(encoded),
        "atlilith.prompt.messages": len(history),
        "atlilith.prompt.history_chars": sum(len(m["text"]) for m in history),
        "atlilith.prompt.truncated": bool(prompt["history_truncated"]),
    }


def _reply_sizes(reply: peers.PeerReply) -> dict[str, str | int]:
    body = reply.data.get("body")
    model = reply.data.get("model")
    return {
        "atlilith.outcome": "answered",
        "http.response.status_code": reply.status,
        "atlilith.peer.latency_ms": reply.latency_ms,
        "atlilith.reply.chars": len(body) if isinstance(body, str) else 0,
        "gen_ai.response.model": str(model)[:200] if model else "",
    }


def _reply_body(reply: peers.PeerReply) -> str:
    body = reply.data.get("body")
    if not isinstance(body, str) or not body.strip() or len(body) > MAX_BODY_CHARS:
        raise BadGateway(
            "the drafting peer's answer has no usable `body`",
            code="draft_peer_bad_response",
            hint="nothing was saved; retry, or write the draft yourself ([[messaging.create_draft]])",
        )
    return body
