"""Which domain events become analytics events, and how: the one table to align with the
payloads of messaging, bookings and tenancy.

Each row names a domain event, the analytics event it becomes (platform-derived names keep the
`{domain}/{entity}.{action}` form; ingested names may not contain `/`, so nobody can forge
them), where the client id is read from, and which data keys become properties. A path is a
key or a dotted path (`price.amount`); alternatives are tried in order and missing keys are
simply left out, so a payload that lacks one still becomes an event. The outbox event id is the
analytics event id: a replayed delivery never counts twice.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

Paths = tuple[str, ...]

# Property names the summary relies on (keep them stable when aligning payloads).
AMOUNT, CURRENCY, THREAD = "amount", "currency", "thread_id"


@dataclass(frozen=True)
class Mapping:
    event: str
    name: str = ""  # analytics name; empty = same as the domain event's
    client: Paths = ("client_id", "client.id")
    properties: dict[str, Paths] = field(default_factory=dict)
    # The data key holding when it happened, when the event's commit time is not it.
    time: Paths = ()

    @property
    def analytics_name(self) -> str:
        return self.name or self.event


_MESSAGE = {
    "message_id": ("message_id", "message.id", "id"),
    THREAD: ("thread_id", "thread.id", "message.thread_id"),
    "channel": ("channel", "message.channel"),
    "brand_id": ("brand_id",),
}
_DRAFT = {
    "draft_id": ("draft_id", "draft.id", "id"),
    THREAD: ("thread_id", "draft.thread_id"),
    "message_id": ("message_id",),
    "channel": ("channel",),
}
_THREAD = {
    THREAD: ("thread_id", "thread.id", "id"),
    "status": ("status", "to", "thread.status"),
    "from_status": ("from", "from_status"),
    "assignee_id": ("assignee_id", "assigned_to", "to_person_id"),
}
_BOOKING = {
    "booking_id": ("booking_id", "booking.id", "id"),
    "service_id": ("service_id", "booking.service_id"),
    "provider_id": ("provider_id", "provider_person_id", "booking.provider_id"),
    "brand_id": ("brand_id",),
    AMOUNT: ("price.amount", "price_amount", "amount", "booking.price.amount"),
    CURRENCY: ("price.currency", "currency", "booking.price.currency"),
    "starts_at": ("start_at", "starts_at", "booking.start_at"),
    "ends_at": ("end_at", "ends_at", "booking.end_at"),
    "status": ("status", "booking.status"),
    "reason": ("reason",),
}
_MEMBER = {
    "member_person_id": ("member_person_id",),
    "role": ("role", "to"),
    "from_role": ("from",),
    "via": ("via",),
}

MAPPINGS: tuple[Mapping, ...] = (
    Mapping("messaging/message.received", properties=_MESSAGE),
    Mapping("messaging/message.sent", properties=_MESSAGE),
    Mapping("messaging/message.failed", properties={**_MESSAGE, "error": ("reason", "error_code")}),
    Mapping("messaging/draft.created", properties=_DRAFT),
    Mapping("messaging/draft.approved", properties=_DRAFT),
    Mapping("messaging/draft.rejected", properties=_DRAFT),
    Mapping("messaging/draft.superseded", properties=_DRAFT),
    Mapping("messaging/thread.status_changed", properties=_THREAD),
    Mapping("messaging/thread.assigned", properties=_THREAD),
    *(
        Mapping(f"bookings/booking.{action}", properties=_BOOKING)
        for action in (
            "held",
            "requested",
            "confirmed",
            "declined",
            "cancelled",
            "rescheduled",
            "completed",
            "no_show",
        )
    ),
    # `bookings/booking.reminder_due` is a timer, not something that happened: not mapped.
    Mapping("platform/org.created", client=(), properties={"slug": ("slug",)}),
    Mapping("platform/org_member.added", client=(), properties=_MEMBER),
    Mapping("platform/org_member.role_changed", client=(), properties=_MEMBER),
    Mapping("platform/org_member.removed", client=(), properties=_MEMBER),
    Mapping("platform/person.created", client=()),
    Mapping("platform/client.created", properties={"via": ("via", "source")}),
    Mapping("platform/brand.created", client=(), properties={"brand_id": ("brand_id",)}),
)
BY_EVENT = {m.event: m for m in MAPPINGS}
# Inngest allows at most 10 triggers per function: entities with several mapped actions are
# subscribed with a wildcard (`bookings/booking.*`); unmapped actions are skipped by the handler.
MAX_TRIGGERS = 10


def subscription_patterns() -> tuple[str, ...]:
    entities: dict[str, list[str]] = {}
    for event in BY_EVENT:
        entities.setdefault(event.rsplit(".", 1)[0], []).append(event)
    patterns = sorted(f"{entity}.*" if len(events) > 1 else events[0] for entity, events in entities.items())
    if len(patterns) > MAX_TRIGGERS:
        raise RuntimeError(f"{len(patterns)} subscription patterns; Inngest allows {MAX_TRIGGERS}")
    return tuple(patterns)


# Names the summary reads.
MESSAGE_RECEIVED = "messaging/message.received"
MESSAGE_SENT = "messaging/message.sent"
BOOKING_REQUESTED = "bookings/booking.requested"
BOOKING_CONFIRMED = "bookings/booking.confirmed"
BOOKING_CANCELLED = "bookings/booking.cancelled"
BOOKING_COMPLETED = "bookings/booking.completed"
BOOKING_NO_SHOW = "bookings/booking.no_show"


def _get(data: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(data, dict) or part not in data:
            return None
        data = data[part]
    return data


def first(data: dict[str, Any], paths: Paths) -> Any:
    for path in paths:
        value = _get(data, path)
        if value is not None:
            return value
    return None


@dataclass(frozen=True)
class Derived:
    name: str
    ts: dt.datetime
    client_id: str | None
    properties: dict[str, Any]


def derive(mapping: Mapping, data: dict[str, Any], committed_at: dt.datetime) -> Derived:
    """The analytics event a domain event becomes (missing keys are left out)."""
    props: dict[str, Any] = {}
    for prop, paths in mapping.properties.items():
        value = first(data, paths)
        if value is not None:
            props[prop] = value
    client = first(data, mapping.client) if mapping.client else None
    ts = committed_at
    raw_time = first(data, mapping.time) if mapping.time else None
    if isinstance(raw_time, str):
        try:
            parsed = dt.datetime.fromisoformat(raw_time)
            if parsed.tzinfo is not None:
                ts = parsed
        except ValueError:
            pass
    # Properties stay small and JSON: anything else is turned into its text.
    props = json.loads(json.dumps(props, default=str))
    return Derived(mapping.analytics_name, ts, str(client)[:128] if client is not None else None, props)
