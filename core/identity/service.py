"""Identity's synchronous doors: resolve now and return the answer. Each call is still a job of
the `identity` component (held, captured, traced; see core/billing) — only the wait differs
from POST /v1/run/identity/resolve-person."""

from __future__ import annotations

from core import billing
from core.context import TenantContext
from core.idempotency import idempotent_operation
from core.identity.schemas import (
    CompanyQuery,
    CompanyResolution,
    CompanyResolved,
    PersonQuery,
    PersonResolution,
    PersonResolved,
)
from core.uow import UnitOfWork


@idempotent_operation("identity.resolve_person")
async def resolve_person(
    ctx: TenantContext, uow: UnitOfWork, data: PersonQuery, idempotency_key: str | None = None
) -> PersonResolution:
    """The stable polyseme id of a person (email, phone, handle) in this context. 1 credit."""
    job, output = await billing.execute_now(
        ctx, uow, "identity", "resolve-person", data.model_dump(mode="json", exclude_none=True)
    )
    assert isinstance(output, PersonResolved)
    return PersonResolution(**output.model_dump(), job_id=job.id, credits_charged=job.credits_captured)


@idempotent_operation("identity.resolve_company")
async def resolve_company(
    ctx: TenantContext, uow: UnitOfWork, data: CompanyQuery, idempotency_key: str | None = None
) -> CompanyResolution:
    """The stable polyseme id of a company (domain, name) in this context. 1 credit."""
    job, output = await billing.execute_now(
        ctx, uow, "identity", "resolve-company", data.model_dump(mode="json", exclude_none=True)
    )
    assert isinstance(output, CompanyResolved)
    return CompanyResolution(**output.model_dump(), job_id=job.id, credits_charged=job.credits_captured)
