"""Changes of an org's ownership take its row in turn: an offer, its acceptance, its withdrawal
and a member's removal each read what the one before committed. Without that, an acceptance
read before a withdrawal committed still took the org, and an offer made by an owner who had
just lost the org stood on its new owner's org."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from core import tenancy
from core.errors import PermissionDenied
from core.opener import open_context
from core.tenancy.schemas import TransferIn
from core.uow import Database
from tests.servers import test_tenancy_api
from tests.servers.test_tenancy_api import Team

team = test_tenancy_api.team  # the fixture: an org with an owner, an admin and a member


async def _offer(client: httpx.AsyncClient, team: Team, to: str) -> None:
    r = await client.post(f"/v1/orgs/{team['org']}/transfer", json={"person": to}, headers=team["owner"].h())
    assert r.status_code == 200, r.text


async def test_a_withdrawal_waits_for_an_acceptance_in_flight(
    client: httpx.AsyncClient,
    team: Team,
    db: Database,
) -> None:
    org, owner, admin = team["org"], team["owner"], team["admin"]
    await _offer(client, team, admin.slug)
    async with db.uow() as uow:
        ctx = await open_context(uow, admin.token, org)
        await tenancy.accept_ownership(ctx, uow)  # holds the org's row until it commits
        withdrawal = asyncio.create_task(client.delete(f"/v1/orgs/{org}/transfer", headers=owner.h()))
        await asyncio.sleep(0.3)
        assert not withdrawal.done(), "the withdrawal read the offer an acceptance was taking"
    withdrawn = await withdrawal
    assert withdrawn.status_code == 404 and withdrawn.json()["code"] == "no_ownership_offer"
    got = (await client.get(f"/v1/orgs/{org}", headers=admin.h())).json()
    assert got["owner"]["slug"] == admin.slug and got["ownership_offer"] is None


async def test_an_owner_who_lost_the_org_meanwhile_offers_nothing(
    client: httpx.AsyncClient,
    team: Team,
    db: Database,
) -> None:
    org, owner, admin, member = team["org"], team["owner"], team["admin"], team["member"]
    await _offer(client, team, admin.slug)
    async with db.uow() as uow:
        ctx = await open_context(uow, owner.token, org)  # the context says: owner
        taken = await client.post(f"/v1/orgs/{org}/transfer/accept", headers=admin.h())
        assert taken.status_code == 200, taken.text
        with pytest.raises(PermissionDenied) as refused:
            await tenancy.transfer_ownership(ctx, uow, TransferIn(person=member.slug))
        assert refused.value.code == "insufficient_role"
    got = (await client.get(f"/v1/orgs/{org}", headers=admin.h())).json()
    assert got["owner"]["slug"] == admin.slug and got["ownership_offer"] is None
