"""messaging: threads, messages, drafts, per-context settings

Revision ID: messaging_0001
Revises:
Create Date: 2026-11-22 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import enable_tenant_rls

revision: str = "messaging_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("messaging",)
depends_on: str | Sequence[str] | None = "0001"


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS messaging")
    op.create_table(
        "settings",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("default_agent_mode", sa.Text(), server_default="draft_only", nullable=False),
        sa.Column(
            "profile",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column(
            "channel_peers",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'{}'::jsonb"),
            nullable=False,
        ),
        sa.Column("draft_peer_url", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.CheckConstraint(
            "default_agent_mode IN ('auto', 'draft_only', 'off')", name=op.f("ck_settings_default_agent_mode")
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_settings_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_settings_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_settings")),
        schema="messaging",
    )
    op.create_index("uq_settings_tenant_id", "settings", ["tenant_id"], unique=True, schema="messaging")
    op.create_table(
        "threads",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text(), server_default="", nullable=False),
        sa.Column("external_key", sa.Text(), nullable=True),
        sa.Column("status", sa.Text(), server_default="open", nullable=False),
        sa.Column("snoozed_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("assignee_id", sa.Uuid(), nullable=True),
        sa.Column(
            "labels", postgresql.ARRAY(sa.Text()), server_default=sa.text("'{}'::text[]"), nullable=False
        ),
        sa.Column("agent_mode", sa.Text(), server_default="draft_only", nullable=False),
        sa.Column("unread_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("preview", sa.Text(), server_default="", nullable=False),
        sa.Column(
            "last_activity_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_inbound_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple'::regconfig, COALESCE(subject, ''::text))", persisted=True),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.CheckConstraint(
            "(status = 'snoozed') = (snoozed_until IS NOT NULL)", name=op.f("ck_threads_snoozed_until")
        ),
        sa.CheckConstraint("agent_mode IN ('auto', 'draft_only', 'off')", name=op.f("ck_threads_agent_mode")),
        sa.CheckConstraint(
            "status IN ('open', 'pending', 'snoozed', 'closed')", name=op.f("ck_threads_status")
        ),
        sa.CheckConstraint("char_length(subject) <= 500", name=op.f("ck_threads_subject_length")),
        sa.CheckConstraint("unread_count >= 0 AND message_count >= 0", name=op.f("ck_threads_counts")),
        sa.ForeignKeyConstraint(
            ["assignee_id"],
            ["platform.persons.id"],
            name=op.f("fk_threads_assignee_id_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["platform.clients.id"],
            name=op.f("fk_threads_client_id_clients"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_threads_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_threads_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threads")),
        schema="messaging",
    )
    op.create_index("ix_threads_assignee_id", "threads", ["assignee_id"], unique=False, schema="messaging")
    op.create_index(
        "ix_threads_labels", "threads", ["labels"], unique=False, schema="messaging", postgresql_using="gin"
    )
    op.create_index(
        "ix_threads_search", "threads", ["search"], unique=False, schema="messaging", postgresql_using="gin"
    )
    op.create_index(
        "ix_threads_snoozed_until",
        "threads",
        ["snoozed_until"],
        unique=False,
        schema="messaging",
        postgresql_where=sa.text("status = 'snoozed'"),
    )
    op.create_index(
        "ix_threads_tenant_id_client_id",
        "threads",
        ["tenant_id", "client_id"],
        unique=False,
        schema="messaging",
    )
    op.create_index(
        "ix_threads_tenant_id_last_activity_at_id",
        "threads",
        ["tenant_id", "last_activity_at", "id"],
        unique=False,
        schema="messaging",
    )
    op.create_index(
        "ix_threads_tenant_id_status_last_activity_at_id",
        "threads",
        ["tenant_id", "status", "last_activity_at", "id"],
        unique=False,
        schema="messaging",
    )
    op.create_index(
        "uq_threads_tenant_id_channel_client_id_external_key",
        "threads",
        ["tenant_id", "channel", "client_id", "external_key"],
        unique=True,
        schema="messaging",
        postgresql_where=sa.text("external_key IS NOT NULL"),
    )
    op.create_table(
        "messages",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("direction", sa.Text(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("author_kind", sa.Text(), nullable=False),
        sa.Column("author_person_id", sa.Uuid(), nullable=True),
        sa.Column("author_api_key_id", sa.Uuid(), nullable=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column(
            "attachments",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("external_id", sa.Text(), nullable=True),
        sa.Column("delivery_status", sa.Text(), nullable=True),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("draft_id", sa.Uuid(), nullable=True),
        sa.Column("read_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column(
            "search",
            postgresql.TSVECTOR(),
            sa.Computed("to_tsvector('simple'::regconfig, COALESCE(body, ''::text))", persisted=True),
            nullable=False,
        ),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.CheckConstraint(
            "(direction = 'out') = (delivery_status IS NOT NULL)", name=op.f("ck_messages_delivery_direction")
        ),
        sa.CheckConstraint(
            "author_kind IN ('client', 'person', 'agent', 'system')", name=op.f("ck_messages_author_kind")
        ),
        sa.CheckConstraint(
            "delivery_status IS NULL OR delivery_status IN ('queued', 'sent', 'failed')",
            name=op.f("ck_messages_delivery_status"),
        ),
        sa.CheckConstraint("direction IN ('in', 'out')", name=op.f("ck_messages_direction")),
        sa.CheckConstraint("char_length(body) <= 100000", name=op.f("ck_messages_body_length")),
        sa.ForeignKeyConstraint(
            ["author_api_key_id"],
            ["platform.api_keys.id"],
            name=op.f("fk_messages_author_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["author_person_id"],
            ["platform.persons.id"],
            name=op.f("fk_messages_author_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_messages_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_messages_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["messaging.threads.id"],
            name=op.f("fk_messages_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        schema="messaging",
    )
    op.create_index(
        "ix_messages_search", "messages", ["search"], unique=False, schema="messaging", postgresql_using="gin"
    )
    op.create_index(
        "ix_messages_thread_id_occurred_at_id",
        "messages",
        ["thread_id", "occurred_at", "id"],
        unique=False,
        schema="messaging",
    )
    op.create_index(
        "ix_messages_thread_id_unread",
        "messages",
        ["thread_id"],
        unique=False,
        schema="messaging",
        postgresql_where=sa.text("direction = 'in' AND read_at IS NULL"),
    )
    op.create_index(
        "uq_messages_tenant_id_channel_external_id",
        "messages",
        ["tenant_id", "channel", "external_id"],
        unique=True,
        schema="messaging",
        postgresql_where=sa.text("external_id IS NOT NULL"),
    )
    op.create_table(
        "drafts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("thread_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.Text(), server_default="pending", nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("created_by_kind", sa.Text(), nullable=False),
        sa.Column("created_by_person_id", sa.Uuid(), nullable=True),
        sa.Column("created_by_api_key_id", sa.Uuid(), nullable=True),
        sa.Column("peer", sa.Text(), nullable=True),
        sa.Column("peer_model", sa.Text(), nullable=True),
        sa.Column("latency_ms", sa.Integer(), nullable=True),
        sa.Column("prompt_hash", sa.Text(), nullable=True),
        sa.Column("reply_to_message_id", sa.Uuid(), nullable=True),
        sa.Column("decided_by_person_id", sa.Uuid(), nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rejection_reason", sa.Text(), nullable=True),
        sa.Column("edited", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("sent_message_id", sa.Uuid(), nullable=True),
        sa.Column("superseded_by_message_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column(
            "tenant_id", sa.Uuid(), sa.Computed("COALESCE(org_id, person_id)", persisted=True), nullable=False
        ),
        sa.CheckConstraint(
            "created_by_kind IN ('person', 'agent', 'peer')", name=op.f("ck_drafts_created_by_kind")
        ),
        sa.CheckConstraint(
            "status IN ('pending', 'approved', 'rejected', 'superseded')", name=op.f("ck_drafts_status")
        ),
        sa.CheckConstraint("char_length(body) <= 100000", name=op.f("ck_drafts_body_length")),
        sa.ForeignKeyConstraint(
            ["created_by_api_key_id"],
            ["platform.api_keys.id"],
            name=op.f("fk_drafts_created_by_api_key_id_api_keys"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["created_by_person_id"],
            ["platform.persons.id"],
            name=op.f("fk_drafts_created_by_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_person_id"],
            ["platform.persons.id"],
            name=op.f("fk_drafts_decided_by_person_id_persons"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=op.f("fk_drafts_org_id_orgs"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"],
            ["platform.persons.id"],
            name=op.f("fk_drafts_person_id_persons"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["reply_to_message_id"],
            ["messaging.messages.id"],
            name=op.f("fk_drafts_reply_to_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["sent_message_id"],
            ["messaging.messages.id"],
            name=op.f("fk_drafts_sent_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["superseded_by_message_id"],
            ["messaging.messages.id"],
            name=op.f("fk_drafts_superseded_by_message_id_messages"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["thread_id"],
            ["messaging.threads.id"],
            name=op.f("fk_drafts_thread_id_threads"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_drafts")),
        schema="messaging",
    )
    op.create_index(
        "ix_drafts_tenant_id_created_at_id",
        "drafts",
        ["tenant_id", "created_at", "id"],
        unique=False,
        schema="messaging",
    )
    op.create_index(
        "ix_drafts_thread_id_pending",
        "drafts",
        ["thread_id"],
        unique=False,
        schema="messaging",
        postgresql_where=sa.text("status = 'pending'"),
    )
    for table in ("messaging.settings", "messaging.threads", "messaging.messages", "messaging.drafts"):
        enable_tenant_rls(table)


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
