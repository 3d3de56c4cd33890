"""/v1/identity: resolve a person or a company to its stable polyseme id, now (1 credit each).
The same actions run asynchronously through POST /v1/run/identity/{action}."""

from __future__ import annotations

from core.identity import service
from core.identity.schemas import CompanyQuery, CompanyResolution, PersonQuery, PersonResolution
from servers.api.deps import CallerDep, FeatureRouter, IdempotencyKey

router = FeatureRouter()


@router.post("/v1/identity/resolve-person", response_model=PersonResolution, tags=["identity"])
async def resolve_person(
    data: PersonQuery, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> PersonResolution:
    """Normalize an email, phone and/or handle; return the person's polyseme id in this context
    and the clients it matches. Runs as a job of 1 credit (402 when none is available)."""
    return await caller.call(service.resolve_person, data, idempotency_key=idempotency_key)


@router.post("/v1/identity/resolve-company", response_model=CompanyResolution, tags=["identity"])
async def resolve_company(
    data: CompanyQuery, caller: CallerDep, idempotency_key: IdempotencyKey = None
) -> CompanyResolution:
    """Normalize a domain (or URL, or email) and/or a company name; return its polyseme id in
    this context. Runs as a job of 1 credit."""
    return await caller.call(service.resolve_company, data, idempotency_key=idempotency_key)
