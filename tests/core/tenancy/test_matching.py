"""Client matching for peers and bookings: normalized, per context, race-safe."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core.errors import ValidationFailed
from core.opener import open_context
from core.tenancy.matching import find_or_create_client
from core.uow import Database
from tests.conftest import make_org, signup


async def _match(db: Database, token: str, org: str | None, **contact: str | None):
    async with db.uow() as uow:
        ctx = await open_context(uow, token, org or "personal")
        return await find_or_create_client(
            ctx, uow, **{"name": None, "email": None, "phone": None, **contact}
        )


async def test_matches_by_normalized_email_or_phone_per_context(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    first, created = await _match(db, a.token, None, name="Zoé", email="Zoe@Example.COM")
    assert created and first.email == "zoe@example.com" and first.name == "Zoé"
    again, created = await _match(db, a.token, None, email="zoe@example.com ")
    assert not created and again.id == first.id
    by_phone, created = await _match(db, a.token, None, phone="+1 (415) 555-0100")
    assert created and by_phone.phone == "+14155550100"
    same, created = await _match(db, a.token, None, phone="+14155550100", name="Other")
    assert not created and same.id == by_phone.id
    # Another context is another client list.
    in_org, created = await _match(db, a.token, org, email="zoe@example.com")
    assert created and in_org.id != first.id and in_org.org_id is not None
    with pytest.raises(ValidationFailed):
        await _match(db, a.token, None, name="Nobody")


async def test_concurrent_matches_make_one_client(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    results = await asyncio.gather(*(_match(db, a.token, None, phone="+33 6 98 76 54 32") for _ in range(10)))
    assert len({r[0].id for r in results}) == 1
    assert sum(created for _, created in results) == 1
