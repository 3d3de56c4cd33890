"""Output models built from rows, and the few input conversions they mirror."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Row

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
from core.presenting import context_kind, from_row
from core.tenancy.models import Client, Person
from core.tenancy.schemas import PersonRef

PREVIEW_CHARS = 200


def client_ref(c: Client) -> ClientRef:
    return ClientRef(id=c.id, untrusted_name=c.name, email=c.email, phone=c.phone)


def thread_out(t: Thread, c: Client, assignee: Person | None) -> ThreadOut:
    return from_row(
        ThreadOut,
        t,
        client=client_ref(c),
        untrusted_subject=t.subject,
        assignee=PersonRef(id=assignee.id, slug=assignee.slug, display_name=assignee.display_name)
        if assignee
        else None,
        labels=list(t.labels or []),
        untrusted_preview=t.preview,
        context=context_kind(t.org_id),
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


def message_out(m: Message | Row[Any]) -> MessageOut:
    """From the ORM object or a row of the messages table's columns (a send reads no object)."""
    inbound = m.direction == "in"
    return from_row(
        MessageOut,
        m,
        author=AuthorOut(kind=m.author_kind, person_id=m.author_person_id, api_key_id=m.author_api_key_id),
        untrusted_body=m.body if inbound else None,
        body=None if inbound else m.body,
        attachments=attachments_out(m.attachments),
    )


def draft_out(d: Draft) -> DraftOut:
    author_kind = "agent" if d.created_by_api_key_id else "person"
    author = AuthorOut(kind=author_kind, person_id=d.created_by_person_id, api_key_id=d.created_by_api_key_id)
    return from_row(DraftOut, d, created_by=author)


def preview(body: str, attachments: list[AttachmentIn]) -> str:
    text_ = " ".join(body.split())
    if not text_ and attachments:
        text_ = f"[{len(attachments)} attachment{'s' if len(attachments) > 1 else ''}]"
    return text_[:PREVIEW_CHARS]


def attachments_in(items: list[AttachmentIn]) -> list[dict[str, Any]]:
    return [a.model_dump(mode="json", exclude_none=True) for a in items]
