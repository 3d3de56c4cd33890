"""Toolset `identity`: resolve a person or a company to its stable polyseme id."""

from __future__ import annotations

from core.billing.policy import JOBS_WRITE
from core.identity import service
from core.identity.actions import IDENTITY_READ
from core.identity.schemas import CompanyQuery, CompanyResolution, PersonQuery, PersonResolution
from tools.base import Flat, IdempotencyArg, OrgArg, ToolRuntime, Toolset

identity = Toolset(
    "identity", "Stable ids for people and companies, the same in every component.", default=False
)


@identity.tool(title="Resolve a person (1 credit)", read_only=False, scopes=(JOBS_WRITE, IDENTITY_READ))
async def identity_resolve_person(
    rt: ToolRuntime, query: Flat[PersonQuery], org: OrgArg = None, idempotency_key: IdempotencyArg = None
) -> PersonResolution:
    """Normalize a person's email, phone and/or handle and return their stable polyseme id in this
    context (the same id every component uses for them, e.g. `polyseme_person_id` on clients) and
    the ids of the clients of this context they match. COSTS 1 CREDIT (a job; fails with
    `insufficient_credits` when none is available). Give at least one identifier."""
    return await rt.call(org, service.resolve_person, query, idempotency_key=idempotency_key)


@identity.tool(title="Resolve a company (1 credit)", read_only=False, scopes=(JOBS_WRITE, IDENTITY_READ))
async def identity_resolve_company(
    rt: ToolRuntime, query: Flat[CompanyQuery], org: OrgArg = None, idempotency_key: IdempotencyArg = None
) -> CompanyResolution:
    """Normalize a company's domain (a URL or an email works too) and/or name and return its stable
    polyseme id in this context. COSTS 1 CREDIT (a job). Give at least one of the two."""
    return await rt.call(org, service.resolve_company, query, idempotency_key=idempotency_key)
