"""Working hours: a provider's weekly hours and date overrides in a context."""

from __future__ import annotations

from sqlalchemy import func, select

from core.bookings.models import Schedule
from core.bookings.policy import READ, WRITE
from core.bookings.queries import find_provider
from core.bookings.schemas import AvailabilityIn, AvailabilityOut, DateOverride, WeeklyHours
from core.context import Role, TenantContext
from core.preconditions import lock_resource, require_match
from core.presenting import context_kind
from core.scoping import in_context, new_in_context
from core.uow import UnitOfWork


async def get_availability(
    ctx: TenantContext, uow: UnitOfWork, provider: str | None = None
) -> AvailabilityOut:
    """A provider's working hours in this context (default: yours)."""
    ctx.require(READ)
    who = await find_provider(ctx, uow, provider)
    schedule = (
        await uow.session.execute(
            select(Schedule).where(in_context(Schedule, ctx), Schedule.provider_id == who.id)
        )
    ).scalar_one_or_none()
    return AvailabilityOut(
        provider=who.ref,
        context=context_kind(ctx.org_id),
        configured=schedule is not None,
        time_zone=schedule.time_zone if schedule else None,
        weekly=[WeeklyHours.model_validate(w) for w in schedule.weekly] if schedule else [],
        overrides=[DateOverride.model_validate(o) for o in schedule.overrides] if schedule else [],
        updated_at=schedule.updated_at if schedule else None,
    )


async def set_availability(
    ctx: TenantContext,
    uow: UnitOfWork,
    provider: str | None,
    data: AvailabilityIn,
    if_match: str | None = None,
) -> AvailabilityOut:
    """Replace a provider's working hours in this context: yours, or (owner/admin) a member's.
    `if_match`: the ETag the change is based on (core.preconditions); None = last write wins."""
    ctx.require(WRITE)
    who = await find_provider(ctx, uow, provider)
    if who.id != ctx.person_id:
        ctx.require_role(Role.OWNER, Role.ADMIN)
    # Hours may have no row yet, so writers queue on the (context, provider) pair itself.
    await lock_resource(uow, "bookings.availability", ctx.tenant_id, who.id)
    if if_match is not None:
        require_match(if_match, await get_availability(ctx, uow, who.slug), what="availability")
    weekly = [w.model_dump(mode="json") for w in sorted(data.weekly, key=lambda w: (w.weekday, w.start))]
    overrides = [o.model_dump(mode="json") for o in sorted(data.overrides, key=lambda o: o.date)]
    stmt = new_in_context(
        Schedule, ctx, provider_id=who.id, time_zone=data.time_zone, weekly=weekly, overrides=overrides
    )
    await uow.session.execute(
        stmt.on_conflict_do_update(
            index_elements=[Schedule.tenant_id, Schedule.provider_id],
            set_={
                "time_zone": data.time_zone,
                "weekly": weekly,
                "overrides": overrides,
                "updated_at": func.now(),
            },
        )
    )
    uow.emit("bookings/availability.updated", {"provider_id": who.id, "time_zone": data.time_zone})
    return await get_availability(ctx, uow, who.slug)
