"""How analytics answers read: the context and range echoed back, and durations in words."""

from __future__ import annotations

from core.analytics.schemas import ContextOut, RangeOut
from core.analytics.timebuckets import Range
from core.context import TenantContext


def context_out(ctx: TenantContext) -> ContextOut:
    if ctx.org_id is None:
        return ContextOut(kind="personal")
    return ContextOut(kind="org", org=ctx.org_slug, role=ctx.role.value if ctx.role else None)


def context_text(ctx: TenantContext) -> str:
    return f"org {ctx.org_slug}" if ctx.org_id is not None else "personal context"


def range_out(rng: Range) -> RangeOut:
    return RangeOut(
        start=rng.local(rng.start), end=rng.local(rng.end), time_zone=str(rng.tz.key), period=rng.period
    )


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"
