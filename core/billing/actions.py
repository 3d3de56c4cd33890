"""What the billing component serves at GET /v1/data/{entity}."""

from __future__ import annotations

from sqlalchemy import func, select

from core.billing.components import DataRows, data_entity, data_rows
from core.billing.models import Job
from core.context import TenantContext
from core.pagination import PageRequest
from core.scoping import in_context, keyset_rows
from core.uow import UnitOfWork


@data_entity(
    "billing",
    "usage",
    summary="Per action: jobs run in this context, how they ended, credits charged.",
    scope="jobs:read",
)
async def usage_by_action(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> DataRows:
    stmt = (
        select(
            Job.component,
            Job.action,
            func.count().label("jobs"),
            func.count().filter(Job.status == "succeeded").label("succeeded"),
            func.count().filter(Job.status == "failed").label("failed"),
            func.count().filter(Job.status == "cancelled").label("cancelled"),
            func.count().filter(Job.status.in_(("queued", "running"))).label("open"),
            func.coalesce(func.sum(Job.credits_captured), 0).label("credits_captured"),
            func.max(Job.created_at).label("last_run_at"),
        )
        .where(in_context(Job, ctx))
        .group_by(Job.component, Job.action)
    )
    rows = await keyset_rows(
        uow, stmt, page, Job.component, Job.action, having=True, key=lambda r: (r.component, r.action)
    )
    return data_rows(
        rows,
        lambda r: {
            **r._asdict(),
            "last_run_at": r.last_run_at.isoformat(),
            "credits_captured": int(r.credits_captured),
        },
    )
