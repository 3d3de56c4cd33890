"""Tables of the `billing` schema: credit accounts, their ledger and expiring lots, jobs, peer
components and the purchase webhook's replay guard. Row-level security is in the migration."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, Index, Integer, Text, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from core.db import Base, Timestamped, created_at, one_of, sql_in, uuid_pk
from core.tenancy.models import TenantOwned

SCHEMA = "billing"

LEDGER_KINDS = ("grant", "purchase", "hold", "capture", "release", "refund", "expiry")
JOB_STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
OPEN_STATUSES = ("queued", "running")
FINISHED_STATUSES = ("succeeded", "failed", "cancelled")


class CreditAccount(TenantOwned, Timestamped, Base):
    """One per context (a person, or an org paying for its members' work). `balance` and `held`
    are running totals of the ledger, kept in the same transaction as each entry: reads never
    sum the ledger, and the CHECKs make a negative balance or availability impossible."""

    __tablename__ = "accounts"
    __table_args__ = (
        CheckConstraint("balance >= 0", name="balance_not_negative"),
        CheckConstraint("held >= 0", name="held_not_negative"),
        CheckConstraint("balance - held >= 0", name="available_not_negative"),
        CheckConstraint(
            "low_balance_threshold IS NULL OR low_balance_threshold >= 0", name="threshold_not_negative"
        ),
        Index("uq_accounts_tenant_id", "tenant_id", unique=True),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    held: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    low_balance_threshold: Mapped[int | None] = mapped_column(BigInteger)
    # Set when the low-balance event fired; cleared when available rises above the threshold,
    # so the event fires once per crossing.
    low_balance_alerted: Mapped[bool] = mapped_column(server_default=text("false"))


class LedgerEntry(TenantOwned, Base):
    """Append-only. Each entry is idempotent on its own key within the account, and its deltas
    are tied to its kind by a CHECK, so the ledger cannot say something the account does not."""

    __tablename__ = "ledger"
    __table_args__ = (
        one_of("kind", LEDGER_KINDS),
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint(
            "(kind IN ('grant', 'purchase', 'refund') AND balance_delta = amount AND held_delta = 0)"
            " OR (kind = 'hold' AND balance_delta = 0 AND held_delta = amount)"
            " OR (kind = 'release' AND balance_delta = 0 AND held_delta = -amount)"
            " OR (kind = 'capture' AND balance_delta = -amount AND held_delta BETWEEN -amount AND 0)"
            " OR (kind = 'expiry' AND balance_delta = -amount AND held_delta = 0)",
            name="deltas_match_kind",
        ),
        Index("uq_ledger_account_id_key", "account_id", "key", unique=True),
        Index("ix_ledger_tenant_id_seq", "tenant_id", "seq"),
        Index("ix_ledger_job_id", "job_id", postgresql_where=text("job_id IS NOT NULL")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    seq: Mapped[int] = mapped_column(BigInteger, Identity(always=True))
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing.accounts.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(Text)
    amount: Mapped[int] = mapped_column(BigInteger)
    balance_delta: Mapped[int] = mapped_column(BigInteger)
    held_delta: Mapped[int] = mapped_column(BigInteger)
    balance_after: Mapped[int] = mapped_column(BigInteger)
    held_after: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[str] = mapped_column(Text)
    job_id: Mapped[uuid.UUID | None]
    memo: Mapped[str | None] = mapped_column(Text)
    expires_at: Mapped[dt.datetime | None]
    created_at: Mapped[dt.datetime] = created_at()


class CreditLot(TenantOwned, Base):
    """What is left of an expiring grant. Captures spend the soonest-expiring lots first; the
    sweep expires what is left (never credits an open hold still needs)."""

    __tablename__ = "credit_lots"
    __table_args__ = (
        CheckConstraint("remaining >= 0 AND remaining <= amount", name="remaining_in_range"),
        Index(
            "ix_credit_lots_account_id_expires_at",
            "account_id",
            "expires_at",
            postgresql_where=text("remaining > 0"),
        ),
        Index("ix_credit_lots_expires_at", "expires_at", postgresql_where=text("remaining > 0")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    account_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing.accounts.id", ondelete="CASCADE"))
    entry_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing.ledger.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(BigInteger)
    remaining: Mapped[int] = mapped_column(BigInteger)
    expires_at: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime] = created_at()


class Peer(Timestamped, Base):
    """A peer component: a service at `base_url` implementing the component contract. Its
    description is readable by every signed-in context (to quote and run its actions); its
    secret lives apart, readable by the platform (system mode) only."""

    __tablename__ = "peers"
    __table_args__ = (
        Index("uq_peers_slug", "slug", unique=True),
        CheckConstraint("timeout_seconds > 0", name="timeout_positive"),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    slug: Mapped[str] = mapped_column(Text)
    name: Mapped[str] = mapped_column(Text)
    base_url: Mapped[str] = mapped_column(Text)
    # [{"name": ..., "price": n, "summary": ..., "overage": "cap" | "allow"}]
    actions: Mapped[list[dict[str, Any]]] = mapped_column(JSONB, server_default=text("'[]'::jsonb"))
    timeout_seconds: Mapped[int] = mapped_column(Integer)
    enabled: Mapped[bool] = mapped_column(server_default=text("true"))


class PeerSecret(Base):
    """A key shared with a peer (Standard Webhooks): it signs our calls and its callbacks. Kept
    verbatim (an HMAC is verified by recomputing it) in a table only system mode can read. A
    peer has one or more: every active key verifies and signs, until its `retires_at`."""

    __tablename__ = "peer_secrets"
    __table_args__ = (Index("ix_peer_secrets_peer_id", "peer_id", "created_at"), {"schema": SCHEMA})

    id: Mapped[uuid.UUID] = uuid_pk()
    peer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("billing.peers.id", ondelete="CASCADE"))
    secret: Mapped[str] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = created_at()
    # NULL: active until a rotation or a retirement sets it.
    retires_at: Mapped[dt.datetime | None]


class Job(TenantOwned, Timestamped, Base):
    """One run of a component action. Its id is its trace id. The hold it placed on the account
    is open exactly while the job is queued or running (a CHECK says so)."""

    __tablename__ = "jobs"
    __table_args__ = (
        one_of("status", JOB_STATUSES),
        one_of("executor", ("builtin", "peer")),
        one_of("hold_status", ("open", "captured", "released")),
        CheckConstraint(
            "(status IN ('queued', 'running')) = (hold_status = 'open')", name="hold_open_while_active"
        ),
        CheckConstraint(
            "credits_quoted >= 0 AND credits_held >= 0 AND credits_captured >= 0", name="credits_not_negative"
        ),
        CheckConstraint("executor = 'builtin' OR peer_id IS NOT NULL", name="peer_named"),
        Index("ix_jobs_tenant_id_created_at", "tenant_id", "created_at", "id"),
        Index("ix_jobs_deadline_at", "deadline_at", postgresql_where=text(sql_in("status", OPEN_STATUSES))),
        Index("ix_jobs_tenant_id_open_hold", "tenant_id", postgresql_where=text("hold_status = 'open'")),
        {"schema": SCHEMA},
    )

    id: Mapped[uuid.UUID] = uuid_pk()
    component: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    executor: Mapped[str] = mapped_column(Text)
    peer_id: Mapped[uuid.UUID | None] = mapped_column(ForeignKey("billing.peers.id", ondelete="RESTRICT"))
    status: Mapped[str] = mapped_column(Text, server_default="queued")
    input: Mapped[dict[str, Any]] = mapped_column(JSONB)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    usage: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    error_code: Mapped[str | None] = mapped_column(Text)
    error_message: Mapped[str | None] = mapped_column(Text)
    credits_quoted: Mapped[int] = mapped_column(BigInteger)
    credits_held: Mapped[int] = mapped_column(BigInteger)
    credits_captured: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    hold_status: Mapped[str] = mapped_column(Text, server_default="open")
    # Past this, an unfinished job fails and its hold is released (the hold's expiry).
    deadline_at: Mapped[dt.datetime]
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    # Callbacks refused for a bad signature: the reason the job fails if no good one comes.
    rejected_callbacks: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]


class WebhookEvent(Base):
    """Purchase webhook events already applied: a replayed event id changes nothing."""

    __tablename__ = "webhook_events"
    __table_args__ = {"schema": SCHEMA}

    id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text)
    tenant_id: Mapped[uuid.UUID]
    credits: Mapped[int] = mapped_column(BigInteger)
    entry_id: Mapped[uuid.UUID | None]
    received_at: Mapped[dt.datetime] = created_at()
