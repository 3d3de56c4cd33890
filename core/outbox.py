"""The outbox: the platform tables of the event spine, the event itself and the rule for event
names. This is what `core.uow` needs to write events in the transaction that made a change, so it
imports nothing of the unit of work, the handler registry or the relay (`core.events`,
`core.relay`)."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    CTE,
    BigInteger,
    Column,
    DateTime,
    Identity,
    Index,
    Integer,
    PrimaryKeyConstraint,
    Table,
    Text,
    bindparam,
    func,
    insert,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import Uuid

from core.db import Base

NOTIFY_CHANNEL = "atlilith_outbox"
_EVENT_NAME = re.compile(r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")

outbox_table = Table(
    "outbox",
    Base.metadata,
    Column("seq", BigInteger, Identity(always=True), nullable=False),
    Column("id", Uuid(as_uuid=True), nullable=False),
    Column("name", Text, nullable=False),
    Column("data", JSONB, nullable=False),
    Column("person_id", Uuid(as_uuid=True)),
    Column("org_id", Uuid(as_uuid=True)),
    Column("trace_id", Text, nullable=False),
    # The span that emitted the event (W3C traceparent): its handlers' spans continue it.
    Column("traceparent", Text),
    Column("created_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    # pending -> dispatched (fanned out to in-process deliveries) | published (sent to Inngest)
    Column("status", Text, server_default="pending", nullable=False),
    Column("attempts", Integer, server_default="0", nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("last_error", Text),
    Column("relayed_at", DateTime(timezone=True)),
    # A batch being published to a sink is leased, not locked across the network call.
    Column("claimed_by", Text),
    Column("claim_token", Uuid(as_uuid=True)),
    Column("lease_until", DateTime(timezone=True)),
    PrimaryKeyConstraint("id"),
    Index("ix_outbox_pending", "seq", postgresql_where=text("status = 'pending'")),
    Index("ix_outbox_created_at", "created_at"),
    Index("ix_outbox_seq", "seq", unique=True),  # the live stream reads by position
    schema="platform",
)

deliveries_table = Table(
    "event_deliveries",
    Base.metadata,
    Column("event_id", Uuid(as_uuid=True), nullable=False),
    Column("handler", Text, nullable=False),
    Column("status", Text, server_default="pending", nullable=False),  # pending | done | dead
    Column("attempts", Integer, server_default="0", nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("last_error", Text),
    Column("updated_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    # The process holding the delivery, this claim's token and the lease's end (see Relay).
    Column("claimed_by", Text),
    Column("claim_token", Uuid(as_uuid=True)),
    Column("lease_until", DateTime(timezone=True)),
    PrimaryKeyConstraint("event_id", "handler"),
    Index("ix_event_deliveries_due", "next_attempt_at", postgresql_where=text("status = 'pending'")),
    Index("ix_event_deliveries_dead", "handler", "updated_at", postgresql_where=text("status = 'dead'")),
    schema="platform",
)

schedule_runs_table = Table(
    "schedule_runs",
    Base.metadata,
    Column("name", Text, nullable=False),
    Column("fire_at", DateTime(timezone=True), nullable=False),
    Column("started_at", DateTime(timezone=True), server_default=func.now(), nullable=False),
    Column("claimed_by", Text),
    Column("finished_at", DateTime(timezone=True)),
    Column("last_error", Text),
    PrimaryKeyConstraint("name", "fire_at"),
    schema="platform",
)


# The columns of an outbox row that emitting an event fills (`core.uow.UnitOfWork.emit`).
EVENT_COLUMNS = ("id", "name", "data", "person_id", "org_id", "trace_id", "traceparent")


# An INSERT of one outbox row as a CTE, each value bound as `outbox_<column>`
# (`core.uow.UnitOfWork.take_event` gives them): a write that carries it writes its unit of
# work's event in its own statement instead of a statement of its own at commit. One row only:
# a multi-row VALUES is compiled again on every execution (SQLAlchemy caches no such statement),
# and two single-row CTEs would insert in no defined order.
EVENT_CTE: CTE = (
    insert(outbox_table)
    .values({c: bindparam(f"outbox_{c}", type_=outbox_table.c[c].type) for c in EVENT_COLUMNS})
    .cte("event")
)


# --- events ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    id: uuid.UUID
    name: str
    data: dict[str, Any]
    ts: dt.datetime
    # The emitting span (W3C traceparent) when known: a handler's span is its child.
    traceparent: str | None = None

    @property
    def trace_id(self) -> str | None:
        value = self.data.get("trace_id")
        return str(value) if value else None

    @property
    def person_id(self) -> uuid.UUID | None:
        return _uuid_or_none(self.data.get("person_id"))

    @property
    def org_id(self) -> uuid.UUID | None:
        return _uuid_or_none(self.data.get("org_id"))


def _uuid_or_none(value: Any) -> uuid.UUID | None:
    if not value:
        return None
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None


def event_uuid(raw_id: str | None, name: str, data: dict[str, Any]) -> uuid.UUID:
    """Outbox ids are UUIDs; an id from elsewhere maps to a stable UUID so replays still dedupe."""
    if raw_id:
        try:
            return uuid.UUID(raw_id)
        except ValueError:
            return uuid.uuid5(uuid.NAMESPACE_URL, f"inngest:{raw_id}")
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{name}:{sorted(data.items())!r}")


def validate_event_name(name: str) -> None:
    if not _EVENT_NAME.match(name):
        raise ValueError(f"event names are '{{domain}}/{{entity}}.{{action}}', got {name!r}")
