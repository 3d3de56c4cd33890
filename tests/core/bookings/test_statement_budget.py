"""What a hold costs in SQL statements (issue 19): the context with its settings, the offer under
the providers' locks, one INSERT the exclusion constraint guards that writes the outbox row
beside the booking -- three, read
from the `x-db-statements` header the app sends when `expose_db_stats` is on. A regression guard:
a pre-check SELECT or a per-provider query added to the path fails it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from core.uow import Database
from tests.conftest import Account, signup
from tests.core.bookings.helpers import at, day_ahead, make_service, round_robin_team, set_hours
from tests.support.statements import counting_client, statements

HOLD_BUDGET = 3


@pytest.fixture
async def counting(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with counting_client(db) as c:
        yield c


async def _hold(
    client: httpx.AsyncClient, who: Account, body: dict[str, Any], org: str | None = None, **headers: str
) -> httpx.Response:
    return await client.post("/v1/bookings/holds", json=body, headers={**who.h(org=org), **headers})


async def test_a_personal_hold_takes_three_statements(counting: httpx.AsyncClient) -> None:
    a = await signup(counting)
    await set_hours(counting, a)
    svc = await make_service(counting, a)
    day = day_ahead(6)
    r = await _hold(counting, a, {"service_id": svc["id"], "start_at": at(day, "10:00")})
    assert r.status_code == 201, r.text
    assert statements(r) <= HOLD_BUDGET, statements(r)
    # The same time again: refused by the constraint (no pre-check), as the 409 problem.
    again = await _hold(counting, a, {"service_id": svc["id"], "start_at": at(day, "10:30")})
    assert again.status_code == 409, again.text
    assert again.json()["code"] == "slot_taken"


async def test_a_round_robin_hold_takes_three_statements_and_skips_the_busy(
    counting: httpx.AsyncClient,
) -> None:
    owner, org, team, svc = await round_robin_team(counting, 3)
    day = day_ahead(9)
    body = {"service_id": svc["id"], "start_at": at(day, "11:00")}
    taken = []
    for _ in team:
        r = await _hold(counting, owner, body, org=org)
        assert r.status_code == 201, r.text
        assert statements(r) <= HOLD_BUDGET, statements(r)
        taken.append(r.json()["provider"]["slug"])
    # Each hold of the same time went to someone still free; then nobody is.
    assert sorted(taken) == sorted(p.slug for p in team)
    full = await _hold(counting, owner, body, org=org)
    assert full.status_code == 409 and full.json()["code"] == "slot_taken", full.text


async def test_a_keyed_hold_adds_only_the_idempotency_record(counting: httpx.AsyncClient) -> None:
    a = await signup(counting)
    await set_hours(counting, a)
    svc = await make_service(counting, a)
    body = {"service_id": svc["id"], "start_at": at(day_ahead(5), "14:00")}
    first = await _hold(counting, a, body, **{"Idempotency-Key": "hold-budget-1"})
    assert first.status_code == 201, first.text
    retry = await _hold(counting, a, body, **{"Idempotency-Key": "hold-budget-1"})
    assert retry.status_code == 201 and retry.json()["id"] == first.json()["id"]
    # The key costs its own statements (claim and record), never a second booking.
    assert statements(retry) <= statements(first) <= HOLD_BUDGET + 2, (first, retry)
