"""Toolset `identity`: resolve a person or a company to its stable polyseme id."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from core.identity import service
from core.identity.schemas import CompanyQuery, CompanyResolution, PersonQuery, PersonResolution
from tools.base import IdempotencyArg, OrgArg, ToolRuntime, Toolset


def toolset(rt: ToolRuntime) -> Toolset:
    ts = Toolset(
        "identity", "Stable ids for people and companies, the same in every component.", default=False
    )

    @ts.tool(
        "identity_resolve_person",
        """Normalize a person's email, phone and/or handle and return their stable polyseme id in
this context (the same id every component uses for them, e.g. `polyseme_person_id` on
clients) and the ids of the clients of this context they match. COSTS 1 CREDIT (a job; fails
with `insufficient_credits` when none is available). Give at least one identifier.""",
        title="Resolve a person (1 credit)",
        read_only=False,
    )
    async def identity_resolve_person(
        email: Annotated[str | None, Field(description="Email address.", max_length=254)] = None,
        phone: Annotated[
            str | None, Field(description="Phone, ideally with country code.", max_length=40)
        ] = None,
        handle: Annotated[
            str | None, Field(description="Handle, e.g. @ada.lovelace.", max_length=101)
        ] = None,
        org: OrgArg = None,
        idempotency_key: IdempotencyArg = None,
    ) -> PersonResolution:
        data = PersonQuery(email=email, phone=phone, handle=handle)
        async with rt.context(org) as (ctx, uow):
            return await service.resolve_person(ctx, uow, data, idempotency_key=idempotency_key)

    @ts.tool(
        "identity_resolve_company",
        """Normalize a company's domain (a URL or an email works too) and/or name and return its
stable polyseme id in this context. COSTS 1 CREDIT (a job). Give at least one of the two.""",
        title="Resolve a company (1 credit)",
        read_only=False,
    )
    async def identity_resolve_company(
        domain: Annotated[str | None, Field(description="Domain, URL or email.", max_length=500)] = None,
        name: Annotated[str | None, Field(description="Company name.", max_length=200)] = None,
        org: OrgArg = None,
        idempotency_key: IdempotencyArg = None,
    ) -> CompanyResolution:
        data = CompanyQuery(domain=domain, name=name)
        async with rt.context(org) as (ctx, uow):
            return await service.resolve_company(ctx, uow, data, idempotency_key=idempotency_key)

    return ts
