"""billing: credit accounts, ledger and lots, jobs, peer components, purchase webhook events

Revision ID: billing_0001
Revises:
Create Date: 2026-11-23 09:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from migrations.rls import SYSTEM, enable_rls, enable_tenant_rls

revision: str = "billing_0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = ("billing",)
depends_on: str | Sequence[str] | None = "0001"

TENANT_ID = sa.Computed("COALESCE(org_id, person_id)", persisted=True)


def _tenant_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("person_id", sa.Uuid(), nullable=False),
        sa.Column("org_id", sa.Uuid(), nullable=True),
        sa.Column("tenant_id", sa.Uuid(), TENANT_ID, nullable=False),
    ]


def _tenant_fks(table: str) -> list[sa.ForeignKeyConstraint]:
    return [
        sa.ForeignKeyConstraint(
            ["org_id"], ["platform.orgs.id"], name=f"fk_{table}_org_id_orgs", ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["person_id"], ["platform.persons.id"], name=f"fk_{table}_person_id_persons", ondelete="RESTRICT"
        ),
    ]


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.execute("CREATE SCHEMA IF NOT EXISTS billing")
    op.create_table(
        "accounts",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("balance", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("held", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("low_balance_threshold", sa.BigInteger(), nullable=True),
        sa.Column("low_balance_alerted", sa.Boolean(), server_default=sa.text("false"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        *_tenant_columns(),
        sa.CheckConstraint("balance >= 0", name=op.f("ck_accounts_balance_not_negative")),
        sa.CheckConstraint("held >= 0", name=op.f("ck_accounts_held_not_negative")),
        sa.CheckConstraint("balance - held >= 0", name=op.f("ck_accounts_available_not_negative")),
        sa.CheckConstraint(
            "low_balance_threshold IS NULL OR low_balance_threshold >= 0",
            name=op.f("ck_accounts_threshold_not_negative"),
        ),
        *_tenant_fks("accounts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        schema="billing",
    )
    op.create_index("uq_accounts_tenant_id", "accounts", ["tenant_id"], unique=True, schema="billing")

    op.create_table(
        "ledger",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("seq", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_delta", sa.BigInteger(), nullable=False),
        sa.Column("held_delta", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.Column("held_after", sa.BigInteger(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("memo", sa.Text(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        *_tenant_columns(),
        sa.CheckConstraint(
            "kind IN ('grant', 'purchase', 'hold', 'capture', 'release', 'refund', 'expiry')",
            name=op.f("ck_ledger_kind"),
        ),
        sa.CheckConstraint("amount > 0", name=op.f("ck_ledger_amount_positive")),
        sa.CheckConstraint(
            "(kind IN ('grant', 'purchase', 'refund') AND balance_delta = amount AND held_delta = 0)"
            " OR (kind = 'hold' AND balance_delta = 0 AND held_delta = amount)"
            " OR (kind = 'release' AND balance_delta = 0 AND held_delta = -amount)"
            " OR (kind = 'capture' AND balance_delta = -amount AND held_delta BETWEEN -amount AND 0)"
            " OR (kind = 'expiry' AND balance_delta = -amount AND held_delta = 0)",
            name=op.f("ck_ledger_deltas_match_kind"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing.accounts.id"],
            name=op.f("fk_ledger_account_id_accounts"),
            ondelete="CASCADE",
        ),
        *_tenant_fks("ledger"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ledger")),
        schema="billing",
    )
    op.create_index(
        "uq_ledger_account_id_key", "ledger", ["account_id", "key"], unique=True, schema="billing"
    )
    op.create_index("ix_ledger_tenant_id_seq", "ledger", ["tenant_id", "seq"], unique=False, schema="billing")
    op.create_index(
        "ix_ledger_job_id",
        "ledger",
        ["job_id"],
        unique=False,
        schema="billing",
        postgresql_where=sa.text("job_id IS NOT NULL"),
    )

    op.create_table(
        "credit_lots",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("account_id", sa.Uuid(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("remaining", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        *_tenant_columns(),
        sa.CheckConstraint(
            "remaining >= 0 AND remaining <= amount", name=op.f("ck_credit_lots_remaining_in_range")
        ),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["billing.accounts.id"],
            name=op.f("fk_credit_lots_account_id_accounts"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["entry_id"],
            ["billing.ledger.id"],
            name=op.f("fk_credit_lots_entry_id_ledger"),
            ondelete="CASCADE",
        ),
        *_tenant_fks("credit_lots"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_lots")),
        schema="billing",
    )
    op.create_index(
        "ix_credit_lots_account_id_expires_at",
        "credit_lots",
        ["account_id", "expires_at"],
        unique=False,
        schema="billing",
        postgresql_where=sa.text("remaining > 0"),
    )
    op.create_index(
        "ix_credit_lots_expires_at",
        "credit_lots",
        ["expires_at"],
        unique=False,
        schema="billing",
        postgresql_where=sa.text("remaining > 0"),
    )

    op.create_table(
        "peers",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("slug", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("base_url", sa.Text(), nullable=False),
        sa.Column(
            "actions",
            postgresql.JSONB(astext_type=sa.Text()),
            server_default=sa.text("'[]'::jsonb"),
            nullable=False,
        ),
        sa.Column("timeout_seconds", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.CheckConstraint("timeout_seconds > 0", name=op.f("ck_peers_timeout_positive")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_peers")),
        schema="billing",
    )
    op.create_index("uq_peers_slug", "peers", ["slug"], unique=True, schema="billing")

    op.create_table(
        "peer_secrets",
        sa.Column("peer_id", sa.Uuid(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("rotated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["billing.peers.id"], name=op.f("fk_peer_secrets_peer_id_peers"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("peer_id", name=op.f("pk_peer_secrets")),
        schema="billing",
    )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("component", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("executor", sa.Text(), nullable=False),
        sa.Column("peer_id", sa.Uuid(), nullable=True),
        sa.Column("status", sa.Text(), server_default="queued", nullable=False),
        sa.Column("input", postgresql.JSONB(astext_type=sa.Text()), nullable=False),
        sa.Column("output", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("usage", postgresql.JSONB(astext_type=sa.Text()), nullable=True),
        sa.Column("error_code", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("credits_quoted", sa.BigInteger(), nullable=False),
        sa.Column("credits_held", sa.BigInteger(), nullable=False),
        sa.Column("credits_captured", sa.BigInteger(), server_default=sa.text("0"), nullable=False),
        sa.Column("hold_status", sa.Text(), server_default="open", nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("attempts", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("rejected_callbacks", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        *_tenant_columns(),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name=op.f("ck_jobs_status")
        ),
        sa.CheckConstraint("executor IN ('builtin', 'peer')", name=op.f("ck_jobs_executor")),
        sa.CheckConstraint(
            "hold_status IN ('open', 'captured', 'released')", name=op.f("ck_jobs_hold_status")
        ),
        sa.CheckConstraint(
            "(status IN ('queued', 'running')) = (hold_status = 'open')",
            name=op.f("ck_jobs_hold_open_while_active"),
        ),
        sa.CheckConstraint(
            "credits_quoted >= 0 AND credits_held >= 0 AND credits_captured >= 0",
            name=op.f("ck_jobs_credits_not_negative"),
        ),
        sa.CheckConstraint("executor = 'builtin' OR peer_id IS NOT NULL", name=op.f("ck_jobs_peer_named")),
        sa.ForeignKeyConstraint(
            ["peer_id"], ["billing.peers.id"], name=op.f("fk_jobs_peer_id_peers"), ondelete="RESTRICT"
        ),
        *_tenant_fks("jobs"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
        schema="billing",
    )
    op.create_index(
        "ix_jobs_tenant_id_created_at",
        "jobs",
        ["tenant_id", "created_at", "id"],
        unique=False,
        schema="billing",
    )
    op.create_index(
        "ix_jobs_deadline_at",
        "jobs",
        ["deadline_at"],
        unique=False,
        schema="billing",
        postgresql_where=sa.text("status IN ('queued', 'running')"),
    )
    op.create_index(
        "ix_jobs_tenant_id_open_hold",
        "jobs",
        ["tenant_id"],
        unique=False,
        schema="billing",
        postgresql_where=sa.text("hold_status = 'open'"),
    )

    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("credits", sa.BigInteger(), nullable=False),
        sa.Column("entry_id", sa.Uuid(), nullable=True),
        sa.Column("received_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webhook_events")),
        schema="billing",
    )

    for table in ("billing.accounts", "billing.ledger", "billing.credit_lots", "billing.jobs"):
        enable_tenant_rls(table)
    # Any bound context may read what peers offer (to quote and run); only the platform writes.
    enable_rls(
        "billing.peers",
        {
            "peers_select": ("SELECT", f"{SYSTEM} OR (SELECT platform.ctx_person_id()) IS NOT NULL", None),
            "peers_system": ("ALL", SYSTEM, SYSTEM),
        },
    )
    for table in ("billing.peer_secrets", "billing.webhook_events"):
        enable_rls(table, {"system_only": ("ALL", SYSTEM, SYSTEM)})


def downgrade() -> None:
    raise RuntimeError("migrations are forward-only: write a new migration instead")
