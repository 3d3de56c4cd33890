"""What starting a job costs in SQL statements (issue 19): the context (with what it may use,
for the installation gate), the job row with its outbox row, its hold sent with the COMMIT --
three. A regression guard, and the rare path beside it: a reused trace id still gets a job of its
own, held once."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest

from core.uow import Database
from tests.conftest import signup
from tests.support.billing import grant, make_admin
from tests.support.registry import install
from tests.support.statements import counting_client, statements

RUN_BUDGET = 3
RUN = "/v1/run/identity/resolve-person"


@pytest.fixture
async def counting(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    async with counting_client(db) as c:
        yield c


async def test_a_run_takes_three_statements_and_a_refusal_holds_nothing(counting: httpx.AsyncClient) -> None:
    admin, a = await make_admin(counting), await signup(counting)
    await grant(counting, admin, 2, person=a.slug)
    await install(counting, a, "identity")
    for i in range(2):
        r = await counting.post(RUN, json={"input": {"email": f"b{i}@example.com"}}, headers=a.h())
        assert r.status_code == 202, r.text
        assert statements(r) <= RUN_BUDGET, statements(r)
    refused = await counting.post(RUN, json={"input": {"email": "c@example.com"}}, headers=a.h())
    assert refused.status_code == 402 and refused.json()["available"] == 0, refused.text
    balance = (await counting.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"], balance["open_holds_count"]) == (2, 2, 2), balance
    jobs = (await counting.get("/v1/jobs", headers=a.h())).json()["items"]
    assert len(jobs) == 2


async def test_a_reused_trace_id_gets_a_fresh_job_held_once(counting: httpx.AsyncClient) -> None:
    admin, a = await make_admin(counting), await signup(counting)
    await grant(counting, admin, 5, person=a.slug)
    await install(counting, a, "identity")
    trace = uuid.uuid4().hex
    headers = {**a.h(), "traceparent": f"00-{trace}-{'2' * 16}-01"}
    ids = []
    for i in range(2):
        r = await counting.post(RUN, json={"input": {"email": f"t{i}@example.com"}}, headers=headers)
        assert r.status_code == 202, r.text
        ids.append(r.json()["job_id"])
    assert ids[0] == str(uuid.UUID(trace)) and ids[1] != ids[0]
    balance = (await counting.get("/v1/credits", headers=a.h())).json()
    assert (balance["held"], balance["open_holds_count"]) == (2, 2), balance
