"""Who may do what in analytics, and which names a query may use: the scopes, the special
breakdowns, whose per-member numbers a context sees, and the event-name check."""

from __future__ import annotations

from core.analytics.parsing import NAME_RE, PLATFORM_NAME_RE
from core.context import Role, TenantContext, register_scopes
from core.errors import FieldIssue, ValidationFailed

READ = "analytics:read"
INGEST = "analytics:ingest"
register_scopes(
    {
        READ: "read analytics: trends, funnels, the summary and raw events",
        INGEST: "send analytics events (brand sites, peer services)",
    }
)
MEMBER, SOURCE = "$member", "$source"


def sees_members(ctx: TenantContext) -> bool:
    """Per-member numbers: yours in personal context; an org's for its owners and admins."""
    return ctx.org_id is None or ctx.role in (Role.OWNER, Role.ADMIN)


def check_name(name: str, field: str) -> str:
    if not (NAME_RE.match(name) or PLATFORM_NAME_RE.match(name)):
        raise ValidationFailed(
            f"{name!r} is not an event name",
            code="invalid_event_name",
            hint="names are like `page_view` (sent) or `bookings/booking.confirmed` (from the platform)",
            errors=[FieldIssue(field, "not an event name")],
        )
    return name
