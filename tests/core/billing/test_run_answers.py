"""A run answers its job's id from the job-and-hold statement's row, without loading the job as
an ORM object (`runs._enqueue`); a run executed at once still gets the `Job` (`_enqueue_job`).
Both write through the same statement: these check the answer is the job the database holds,
held once, in an org's context as in a person's."""

from __future__ import annotations

import httpx

from tests.conftest import make_org, signup
from tests.support.billing import grant, make_admin
from tests.support.registry import install

RUN = "/v1/run/identity/resolve-person"


async def test_a_run_answers_the_job_it_wrote_and_held(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    org = await make_org(client, a)
    await grant(client, admin, 3, org=org)
    h = a.h(org)
    await install(client, a, "identity", org=org)
    r = await client.post(RUN, json={"input": {"email": "Run@Example.com"}}, headers=h)
    assert r.status_code == 202, r.text
    answer = r.json()
    assert r.headers["location"] == f"/v1/jobs/{answer['job_id']}"
    job = (await client.get(f"/v1/jobs/{answer['job_id']}", headers=h)).json()
    assert answer == {
        "job_id": job["id"],
        "trace_id": job["trace_id"],
        "status": job["status"],
        "credits_held": job["credits_held"],
    }
    assert (job["status"], job["credits_held"], job["hold_status"]) == ("queued", 1, "open")
    assert job["component"] == "identity" and job["input"]["email"].lower() == "run@example.com"
    holds = (await client.get("/v1/credits/ledger?kind=hold", headers=h)).json()["items"]
    assert [(e["job_id"], e["amount"], e["held_after"]) for e in holds] == [(job["id"], 1, 1)]
    balance = (await client.get("/v1/credits", headers=h)).json()
    assert balance["held"] == 1 and balance["open_holds_count"] == 1, balance
