"""The identity component's actions (run as jobs, paid in credits) and the data it serves."""

from __future__ import annotations

import uuid
from collections import defaultdict
from functools import lru_cache
from typing import Any, cast

from sqlalchemy import Table, Uuid, bindparam, func, or_, select, update

from core.billing.components import (
    ActionResult,
    ActionRun,
    DataRows,
    action,
    data_entity,
    data_rows,
    per_unit,
)
from core.context import TenantContext, register_scopes
from core.db import DriverStatement
from core.identity import polyseme
from core.identity.schemas import (
    CompanyQuery,
    CompanyResolved,
    DedupeIn,
    DedupeOut,
    DuplicateGroup,
    PersonQuery,
    PersonResolved,
)
from core.pagination import PageRequest
from core.scoping import in_context, keyset_rows, owned_by
from core.tenancy.models import Client
from core.uow import UnitOfWork

IDENTITY_READ = "identity:read"
register_scopes({IDENTITY_READ: "resolve people and companies to stable polyseme ids"})
ROWS_PER_CREDIT = 100
MAX_GROUPS = 100


# The tenant as a parameter of a statement compiled once.
_TENANT = cast(uuid.UUID, bindparam("tenant", type_=Uuid()))


@lru_cache(maxsize=4)
def _matching_clients(*, email: bool, phone: bool) -> DriverStatement:
    """A context's clients matching a person's polyseme id (or email, or phone), oldest first:
    compiled once per shape, for the driver (a job's action otherwise built and compiled it
    through the ORM on every run, a third of a quick job's Python)."""
    conditions = [Client.polyseme_person_id == bindparam("pid")]
    if email:
        conditions.append(func.lower(Client.email) == bindparam("email"))
    if phone:
        conditions.append(Client.phone == bindparam("phone"))
    return DriverStatement.of(
        select(Client.id)
        .where(owned_by(Client, _TENANT), or_(*conditions))
        .order_by(Client.created_at, Client.id)
        .limit(20)
    )


@action(
    "identity",
    "resolve-person",
    price=1,
    input=PersonQuery,
    output=PersonResolved,
    scope=IDENTITY_READ,
    summary="""Normalize an email, phone and/or handle and return the person's stable polyseme id
    in this context, with the clients of this context it matches.""",
)
async def resolve_person(run: ActionRun, data: PersonQuery) -> ActionResult:
    normalized = {"email": data.email, "phone": data.phone, "handle": data.handle}
    secret = polyseme.secret_for(run.uow.db.settings)
    found = polyseme.primary(normalized, polyseme.PERSON_KINDS)
    assert found is not None  # the input model requires one identifier
    pid = polyseme.stable_id(secret, run.ctx.tenant_id, *found)
    stmt = _matching_clients(email=bool(data.email), phone=bool(data.phone))
    values = {"pid": pid, "email": data.email, "phone": data.phone, "tenant": run.ctx.tenant_id}
    clients = [row[0] for row in await run.uow.fetch(stmt.sql, *stmt.args(values))]
    return ActionResult(
        output=PersonResolved(
            polyseme_id=pid,
            matched_on=found[0],
            normalized={k: v for k, v in normalized.items() if v},
            ids=polyseme.ids_for(secret, run.ctx.tenant_id, normalized),
            client_ids=clients,
        ),
        usage={"lookups": 1},
    )


@action(
    "identity",
    "resolve-company",
    price=1,
    input=CompanyQuery,
    output=CompanyResolved,
    scope=IDENTITY_READ,
    summary="""Normalize a company's domain (or URL, or email) and/or name and return its stable
    polyseme id in this context.""",
)
async def resolve_company(run: ActionRun, data: CompanyQuery) -> ActionResult:
    normalized = {"domain": data.domain, "name": data.name}
    secret = polyseme.secret_for(run.uow.db.settings)
    found = polyseme.primary(normalized, polyseme.COMPANY_KINDS)
    assert found is not None
    return ActionResult(
        output=CompanyResolved(
            polyseme_id=polyseme.stable_id(secret, run.ctx.tenant_id, "company-" + found[0], found[1]),
            matched_on=found[0],
            normalized={k: v for k, v in normalized.items() if v},
            ids={
                k: polyseme.stable_id(secret, run.ctx.tenant_id, "company-" + k, v)
                for k, v in normalized.items()
                if v
            },
        ),
        usage={"lookups": 1},
    )


async def _quote_dedupe(ctx: TenantContext, uow: UnitOfWork, data: DedupeIn) -> int:
    count = (await uow.session.execute(select(func.count()).where(in_context(Client, ctx)))).scalar_one()
    return per_unit(int(count), ROWS_PER_CREDIT)


@action(
    "identity",
    "dedupe-clients",
    price=1,
    unit=f"{ROWS_PER_CREDIT} clients",
    quote=_quote_dedupe,
    quick=False,
    input=DedupeIn,
    output=DedupeOut,
    scope="tenancy:write",
    summary=f"""Compute every client's polyseme id in this context, store the missing or stale
    ones, and report clients that look like one person (same phone or same id). 1 credit per
    {ROWS_PER_CREDIT} clients (at least 1), quoted from the client count; never more than held.""",
)
async def dedupe_clients(run: ActionRun, data: DedupeIn) -> ActionResult:
    settings = run.uow.db.settings
    tenant = run.ctx.tenant_id
    rows = (
        await run.uow.session.execute(
            select(Client.id, Client.email, Client.phone, Client.polyseme_person_id)
            .where(owned_by(Client, tenant))
            .order_by(Client.created_at, Client.id)
        )
    ).all()
    stale: list[dict[str, Any]] = []
    by_phone: dict[str, list[uuid.UUID]] = defaultdict(list)
    by_id: dict[uuid.UUID, list[uuid.UUID]] = defaultdict(list)
    for row in rows:
        pid = polyseme.client_person_id(settings, tenant, row.email.lower() if row.email else None, row.phone)
        if pid is not None:
            by_id[pid].append(row.id)
            if pid != row.polyseme_person_id:
                stale.append({"cid": row.id, "pid": pid})
        if row.phone:
            by_phone[row.phone].append(row.id)
    if data.fill_missing and stale:
        # Core executemany (the ORM would read a list of rows as a bulk update by primary key).
        clients = cast(Table, Client.__table__)
        await run.uow.session.execute(
            update(clients)
            .where(clients.c.id == bindparam("cid"), owned_by(clients, tenant))
            .values(polyseme_person_id=bindparam("pid")),
            stale,
        )
    groups = [
        DuplicateGroup(matched_on="polyseme_id", client_ids=ids) for ids in by_id.values() if len(ids) > 1
    ]
    seen = {frozenset(g.client_ids) for g in groups}
    groups += [
        DuplicateGroup(matched_on="phone", client_ids=ids)
        for ids in by_phone.values()
        if len(ids) > 1 and frozenset(ids) not in seen
    ]
    updated = len(stale) if data.fill_missing else 0
    return ActionResult(
        output=DedupeOut(rows=len(rows), updated=updated, groups=groups[:MAX_GROUPS]),
        usage={"rows": len(rows), "updated": updated},
        credits=per_unit(len(rows), ROWS_PER_CREDIT),
    )


@data_entity(
    "identity",
    "persons",
    summary="The clients of this context with their polyseme person ids.",
    scope="tenancy:read",
)
async def persons(ctx: TenantContext, uow: UnitOfWork, page: PageRequest) -> DataRows:
    stmt = select(Client.id, Client.polyseme_person_id, Client.created_at).where(in_context(Client, ctx))
    rows = await keyset_rows(
        uow, stmt, page, Client.created_at, Client.id, key=lambda r: (r.created_at, r.id)
    )
    return data_rows(
        rows,
        lambda r: {
            "client_id": str(r.id),
            "polyseme_person_id": str(r.polyseme_person_id) if r.polyseme_person_id else None,
        },
    )
