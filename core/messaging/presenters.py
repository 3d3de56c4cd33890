"""Output models built from rows, and the few input conversions they mirror."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from core.messaging.models import Draft, Message, Thread
from core.messaging.schemas import (
    AttachmentIn,
    AttachmentOut,
    AuthorOut,
    ClientRef,
    DraftOut,
    MessageOut,
    ThreadOut,
)
from core.tenancy.models import Client, Person
from core.tenancy.schemas import PersonRef

PREVIEW_CHARS = 200


def context_kind(org_id: uuid.UUID | None) -> Literal["personal", "org"]:
    return "org" if org_id else "personal"


def client_ref(c: Client) -> ClientRef:
    return ClientRef(id=c.id, untrusted_name=c.name, email=c.email, phone=c.phone)


def thread_out(t: Thread, c: Client, assignee: Person | None) -> ThreadOut:
    return ThreadOut(
        id=t.id,
        client=client_ref(c),
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
        context=context_kind(t.org_id),
        org_id=t.org_id,
        created_at=t.created_at,
        updated_at=t.updated_at,
    )


def attachments_out(raw: list[dict[str, Any]] | None) -> list[AttachmentOut]:
    return [
        AttachmentOut(
            url=str(a.get("url", "")),
            content_type=str(a.get("content_type", "")),
            size_bytes=int(a.get("size_bytes", 0)),
            untrusted_name=a.get("name"),
        )
        for a in raw or []
    ]


def message_out(m: Message) -> MessageOut:
    inbound = m.direction == "in"
    return MessageOut(
        id=m.id,
        thread_id=m.thread_id,
        direction=m.direction,
        channel=m.channel,
        author=AuthorOut(kind=m.author_kind, person_id=m.author_person_id, api_key_id=m.author_api_key_id),
        untrusted_body=m.body if inbound else None,
        body=None if inbound else m.body,
        attachments=attachments_out(m.attachments),
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


def draft_out(d: Draft) -> DraftOut:
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


def preview(body: str, attachments: list[AttachmentIn]) -> str:
    text_ = " ".join(body.split())
    if not text_ and attachments:
        text_ = f"[{len(attachments)} attachment{'s' if len(attachments) > 1 else ''}]"
    return text_[:PREVIEW_CHARS]


def attachments_in(items: list[AttachmentIn]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json", exclude_none=True) for a in items]
