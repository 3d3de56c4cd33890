"""Tables of the `messaging` schema. Row-level security for them is in the migration."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import CheckConstraint, Computed, ForeignKey, Index, Text, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Timestamped, created_at, one_of, uuid_pk
from core.tenancy.models import TenantOwned

SCHEMA = "messaging"
# Hard ceiling in the database; the API's own limit (schemas.MAX_BODY_CHARS) is lower.
BODY_CEILING = 100_000
# 'simple': no language's stemming is imposed on a provider who writes French or Spanish;
# queries are prefix queries instead (see service._tsquery).
SUBJECT_TSV = "to_tsvector('simple'::regconfig, COALESCE(subject, ''::text))"
BODY_TSV = "to_tsvector('simple'::regconfig, COALESCE(body, ''::text))"


class MessagingSettings(TenantOwned, Timestamped, Base):
    """One row per context (personal or org): agent default, provider profile, peers."""

    __tablename__ = "settings"
    __table_args__ = (
        one_of("default_agent_mode", ("auto", "draft_only", "off")),
        Index("uq_settings_tenant_id", "tenant_id", unique=True),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    default_agent_mode: Mapped[str] = mapped_column(Text, server_default="draft_only")
    profile: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    channel_peers: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    draft_peer_url: Mapped[str | None] = mapped_column(Text)


class Thread(TenantOwned, Timestamped, Base):
    __tablename__ = "threads"
    __table_args__ = (
        one_of("status", ("open", "pending", "snoozed", "closed")),
        CheckConstraint("(status = 'snoozed') = (snoozed_until IS NOT NULL)", name="snoozed_until"),
        one_of("agent_mode", ("auto", "draft_only", "off")),
        CheckConstraint("unread_count >= 0 AND message_count >= 0", name="counts"),
        CheckConstraint("char_length(subject) <= 500", name="subject_length"),
        # The inbox: newest activity first, keyset on (last_activity_at, id).
        Index("ix_threads_tenant_id_last_activity_at_id", "tenant_id", "last_activity_at", "id"),
        Index(
            "ix_threads_tenant_id_status_last_activity_at_id", "tenant_id", "status", "last_activity_at", "id"
        ),
        Index("ix_threads_tenant_id_client_id", "tenant_id", "client_id"),
        Index("ix_threads_assignee_id", "assignee_id"),
        Index(
            "uq_threads_tenant_id_channel_client_id_external_key",
            "tenant_id",
            "channel",
            "client_id",
            "external_key",
            unique=True,
            postgresql_where=text("external_key IS NOT NULL"),
        ),
        Index("ix_threads_labels", "labels", postgresql_using="gin"),
        Index("ix_threads_search", "search", postgresql_using="gin"),
        Index("ix_threads_snoozed_until", "snoozed_until", postgresql_where=text("status = 'snoozed'")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    client_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("platform.clients.id", ondelete="CASCADE"))
    channel: Mapped[str] = mapped_column(Text)
    subject: Mapped[str] = mapped_column(Text, server_default="")
    # The channel's own conversation id (an email thread root, an iMessage chat id).
    external_key: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text, server_default="open")
    snoozed_until: Mapped[dt.datetime | None]
    assignee_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="SET NULL")
    )
    labels: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'::text[]"))
    agent_mode: Mapped[str] = mapped_column(Text, server_default="draft_only")
    unread_count: Mapped[int] = mapped_column(server_default=text("0"))
    message_count: Mapped[int] = mapped_column(server_default=text("0"))
    preview: Mapped[str] = mapped_column(Text, server_default="")
    last_activity_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    last_inbound_at: Mapped[dt.datetime | None]
    # The client's conversation link (core.messaging.conversation): which one, and whether it opens.
    client_link_generation: Mapped[int] = mapped_column(server_default=text("0"))
    client_link_active: Mapped[bool] = mapped_column(server_default=text("false"))
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(SUBJECT_TSV, persisted=True), deferred=True)


class Message(TenantOwned, Base):
    __tablename__ = "messages"
    __table_args__ = (
        one_of("direction", ("in", "out")),
        one_of("author_kind", ("client", "person", "agent", "system")),
        one_of("delivery_status", ("queued", "sent", "failed"), nullable=True),
        # Outbound messages always carry a delivery status; inbound ones never do.
        CheckConstraint("(direction = 'out') = (delivery_status IS NOT NULL)", name="delivery_direction"),
        CheckConstraint(f"char_length(body) <= {BODY_CEILING}", name="body_length"),
        Index("ix_messages_thread_id_occurred_at_id", "thread_id", "occurred_at", "id"),
        Index(
            "uq_messages_tenant_id_channel_external_id",
            "tenant_id",
            "channel",
            "external_id",
            unique=True,
            postgresql_where=text("external_id IS NOT NULL"),
        ),
        Index("ix_messages_search", "search", postgresql_using="gin"),
        Index(
            "ix_messages_thread_id_unread",
            "thread_id",
            postgresql_where=text("direction = 'in' AND read_at IS NULL"),
        ),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messaging.threads.id", ondelete="CASCADE"))
    direction: Mapped[str] = mapped_column(Text)
    channel: Mapped[str] = mapped_column(Text)
    author_kind: Mapped[str] = mapped_column(Text)
    # The person who wrote it, or on whose behalf an agent (API key) did.
    author_person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="SET NULL")
    )
    author_api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.api_keys.id", ondelete="SET NULL")
    )
    body: Mapped[str] = mapped_column(Text)
    attachments: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    external_id: Mapped[str | None] = mapped_column(Text)
    delivery_status: Mapped[str | None] = mapped_column(Text)
    failure_reason: Mapped[str | None] = mapped_column(Text)
    delivery_attempts: Mapped[int] = mapped_column(server_default=text("0"))
    sent_at: Mapped[dt.datetime | None]
    draft_id: Mapped[uuid.UUID | None]
    read_at: Mapped[dt.datetime | None]
    occurred_at: Mapped[dt.datetime] = mapped_column(server_default=text("now()"))
    search: Mapped[Any] = mapped_column(TSVECTOR, Computed(BODY_TSV, persisted=True), deferred=True)
    created_at: Mapped[dt.datetime] = created_at()


class Draft(TenantOwned, Timestamped, Base):
    __tablename__ = "drafts"
    __table_args__ = (
        one_of("status", ("pending", "approved", "rejected", "superseded")),
        one_of("created_by_kind", ("person", "agent", "peer")),
        CheckConstraint(f"char_length(body) <= {BODY_CEILING}", name="body_length"),
        Index("ix_drafts_tenant_id_created_at_id", "tenant_id", "created_at", "id"),
        Index("ix_drafts_thread_id_pending", "thread_id", postgresql_where=text("status = 'pending'")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    thread_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("messaging.threads.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(Text, server_default="pending")
    body: Mapped[str] = mapped_column(Text)
    # person: written by a signed-in person; agent: by an API key; peer: generated by the
    # drafting peer at the request of `created_by_person_id` (through `created_by_api_key_id`).
    created_by_kind: Mapped[str] = mapped_column(Text)
    created_by_person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="SET NULL")
    )
    created_by_api_key_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.api_keys.id", ondelete="SET NULL")
    )
    peer: Mapped[str | None] = mapped_column(Text)
    peer_model: Mapped[str | None] = mapped_column(Text)
    latency_ms: Mapped[int | None]
    prompt_hash: Mapped[str | None] = mapped_column(Text)
    # The newest inbound message when the draft was made: what it answers.
    reply_to_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messaging.messages.id", ondelete="SET NULL")
    )
    decided_by_person_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("platform.persons.id", ondelete="SET NULL")
    )
    decided_at: Mapped[dt.datetime | None]
    rejection_reason: Mapped[str | None] = mapped_column(Text)
    edited: Mapped[bool] = mapped_column(server_default=text("false"))
    sent_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messaging.messages.id", ondelete="SET NULL")
    )
    superseded_by_message_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("messaging.messages.id", ondelete="SET NULL")
    )
