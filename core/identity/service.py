"""Identity's synchronous doors: resolve now and return the answer. Each call is still a job of
the `identity` component (held, captured, traced; see core/billing) — only the wait differs
from POST /v1/run/identity/resolve-person."""

from __future__ import annotations

from typing import TypeVar

from pydantic import BaseModel

from core import billing
from core.context import TenantContext
from core.idempotency import idempotent_operation
from core.identity.schemas import (
    CompanyQuery,
    CompanyResolution,
    PersonQuery,
    PersonResolution,
)
from core.uow import UnitOfWork

Answer = TypeVar("Answer", PersonResolution, CompanyResolution)


@idempotent_operation("identity.resolve_person")
async def resolve_person(
    ctx: TenantContext, uow: UnitOfWork, data: PersonQuery, idempotency_key: str | None = None
) -> PersonResolution:
    """The stable polyseme id of a person (email, phone, handle) in this context. 1 credit."""
    return await _resolve(ctx, uow, "resolve-person", data, PersonResolution)


@idempotent_operation("identity.resolve_company")
async def resolve_company(
    ctx: TenantContext, uow: UnitOfWork, data: CompanyQuery, idempotency_key: str | None = None
) -> CompanyResolution:
    """The stable polyseme id of a company (domain, name) in this context. 1 credit."""
    return await _resolve(ctx, uow, "resolve-company", data, CompanyResolution)


async def _resolve(
    ctx: TenantContext, uow: UnitOfWork, action: str, query: BaseModel, answer: type[Answer]
) -> Answer:
    """The identity action `action` run now; its output answered with the job that did it."""
    job, output = await billing.execute_now(
        ctx, uow, "identity", action, query.model_dump(mode="json", exclude_none=True)
    )
    # The answer extends the action's output model: validating it checks the output's shape.
    return answer(**output.model_dump(), job_id=job.id, credits_charged=job.credits_captured)
