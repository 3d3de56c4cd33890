"""Credits: holds that never overdraw under concurrency, captures and releases that follow the
job, idempotent ledger entries, expiring grants, the low-balance event, the purchase webhook."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import time
import uuid
from typing import Any

import httpx
from sqlalchemy import text

from core import billing, webhooks
from core.relay import Relay
from core.uow import Database
from tests.conftest import join_org, make_org, signup
from tests.support.billing import (
    all_actions,
    app_db,
    assert_consistent,
    grant,
    ledger_state,
    make_admin,
    signed,
)
from tests.support.registry import install
from tests.support.serving import app_client
from tests.support.sql import system_sql

PERSON = {"input": {"email": "ada@example.com"}}


async def events_named(db: Database, name: str, tenant: str) -> list[dict[str, Any]]:
    async with db.system() as uow:
        rows = (
            await uow.session.execute(
                text(
                    "SELECT data FROM platform.outbox WHERE name = :n AND data->>'tenant_id' = :t ORDER BY seq"
                ),
                {"n": name, "t": tenant},
            )
        ).scalars()
        return list(rows)


async def test_100_concurrent_jobs_against_10_credits_accept_exactly_10(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 10, person=a.slug)
    await install(client, a, "identity")

    async def run(i: int) -> httpx.Response:
        return await client.post(
            "/v1/run/identity/resolve-person", json={"input": {"email": f"p{i}@example.com"}}, headers=a.h()
        )

    responses = await asyncio.gather(*(run(i) for i in range(100)))
    codes = [r.status_code for r in responses]
    assert codes.count(202) == 10 and codes.count(402) == 90, codes
    refused = next(r for r in responses if r.status_code == 402).json()
    assert refused["code"] == "insufficient_credits" and refused["hint"] and refused["available"] == 0
    accepted = [r.json() for r in responses if r.status_code == 202]
    assert all(x["credits_held"] == 1 and x["trace_id"] == uuid.UUID(x["job_id"]).hex for x in accepted)
    assert len({x["job_id"] for x in accepted}) == 10

    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"], balance["available"], balance["open_holds_count"]) == (
        10,
        10,
        0,
        10,
    )
    state = await ledger_state(app_db(client), a.id)
    assert_consistent(state)
    assert state["entries"] == 11  # the grant and ten holds, nothing for the refused ninety

    await Relay(app_db(client)).drain()
    jobs = (await client.get("/v1/jobs?limit=100", headers=a.h())).json()["items"]
    assert sorted(j["status"] for j in jobs) == ["succeeded"] * 10
    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (0, 0, 0)
    state = await ledger_state(app_db(client), a.id)
    assert_consistent(state)
    assert state["entries"] == 21  # + ten captures


async def test_concurrent_holds_on_an_org_account_from_several_members(client: httpx.AsyncClient) -> None:
    admin, owner, member = await make_admin(client), await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, member)
    await grant(client, admin, 7, org=org)
    await grant(client, admin, 3, person=member.slug)
    await install(client, owner, "identity", org=org)
    runs = [
        client.post("/v1/run/identity/resolve-person", json=PERSON, headers=who.h(org=org))
        for who in (owner, member)
        for _ in range(20)
    ]
    codes = [r.status_code for r in await asyncio.gather(*runs)]
    assert codes.count(202) == 7
    org_id = (await client.get(f"/v1/orgs/{org}", headers=owner.h())).json()["id"]
    assert_consistent(await ledger_state(app_db(client), org_id))
    # The org paid for its members' work: the member's own credits are untouched.
    personal = (await client.get("/v1/credits", headers=member.h())).json()
    assert (personal["balance"], personal["held"]) == (3, 0)


async def test_a_failed_job_releases_its_hold_and_charges_nothing(client: httpx.AsyncClient) -> None:
    import tests.support.billing  # noqa: F401  (registers the test actions)

    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 10, person=a.slug)
    boom = (await client.post("/v1/run/tests/explode", json={"input": {}}, headers=a.h())).json()
    refused = (await client.post("/v1/run/tests/refuse", json={"input": {}}, headers=a.h())).json()
    held = (await client.get("/v1/credits", headers=a.h())).json()
    assert (held["balance"], held["held"], held["available"]) == (10, 4, 6)

    await Relay(app_db(client)).drain()
    failed = (await client.get(f"/v1/jobs/{boom['job_id']}", headers=a.h())).json()
    assert failed["status"] == "failed" and failed["hold_status"] == "released"
    assert failed["error"]["code"] == "action_failed" and "boom" not in json.dumps(failed)
    domain = (await client.get(f"/v1/jobs/{refused['job_id']}", headers=a.h())).json()
    assert domain["error"] == {"code": "refused_input", "message": "the action refused its input"}
    after = (await client.get("/v1/credits", headers=a.h())).json()
    assert (after["balance"], after["held"], after["available"]) == (10, 0, 10)
    kinds = [e["kind"] for e in (await client.get("/v1/credits/ledger", headers=a.h())).json()["items"]]
    assert sorted(kinds) == ["grant", "hold", "hold", "release", "release"]
    assert_consistent(await ledger_state(app_db(client), a.id))


async def test_capture_is_the_actual_usage_and_never_more_than_held(client: httpx.AsyncClient) -> None:
    import tests.support.billing  # noqa: F401

    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 20, person=a.slug)
    cheaper = (
        await client.post("/v1/run/tests/metered", json={"input": {"credits": 1}}, headers=a.h())
    ).json()
    dearer = (
        await client.post("/v1/run/tests/metered", json={"input": {"credits": 9}}, headers=a.h())
    ).json()
    overage = (
        await client.post("/v1/run/tests/metered-overage", json={"input": {"credits": 5}}, headers=a.h())
    ).json()
    assert [cheaper["credits_held"], dearer["credits_held"], overage["credits_held"]] == [3, 3, 3]
    await Relay(app_db(client)).drain()
    jobs = {j["id"]: j for j in (await client.get("/v1/jobs", headers=a.h())).json()["items"]}
    assert jobs[cheaper["job_id"]]["credits_captured"] == 1  # the unused 2 are released
    assert jobs[dearer["job_id"]]["credits_captured"] == 3  # capped at the hold
    assert jobs[overage["job_id"]]["credits_captured"] == 5  # the action declares overage
    assert jobs[dearer["job_id"]]["usage"] == {"units": 9}
    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"]) == (20 - 1 - 3 - 5, 0)
    entries = (await client.get(f"/v1/credits/ledger?job_id={cheaper['job_id']}", headers=a.h())).json()[
        "items"
    ]
    assert sorted((e["kind"], e["amount"]) for e in entries) == [("capture", 1), ("hold", 3), ("release", 2)]
    assert_consistent(await ledger_state(app_db(client), a.id))


async def test_overage_never_overdraws(client: httpx.AsyncClient) -> None:
    import tests.support.billing  # noqa: F401

    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 4, person=a.slug)
    job = (
        await client.post("/v1/run/tests/metered-overage", json={"input": {"credits": 50}}, headers=a.h())
    ).json()
    await Relay(app_db(client)).drain()
    done = (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()
    assert done["status"] == "succeeded" and done["credits_captured"] == 4
    assert (await client.get("/v1/credits", headers=a.h())).json()["balance"] == 0
    assert_consistent(await ledger_state(app_db(client), a.id))


async def test_run_is_idempotent_on_its_key_even_concurrently(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 5, person=a.slug)
    await install(client, a, "identity")
    headers = {**a.h(), "Idempotency-Key": "run-once"}
    first, second = await asyncio.gather(
        client.post("/v1/run/identity/resolve-person", json=PERSON, headers=headers),
        client.post("/v1/run/identity/resolve-person", json=PERSON, headers=headers),
    )
    assert first.status_code == second.status_code == 202
    assert first.json() == second.json()
    assert (await client.get("/v1/credits", headers=a.h())).json()["held"] == 1
    other = await client.post(
        "/v1/run/identity/resolve-person", json={"input": {"email": "x@example.com"}}, headers=headers
    )
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"


async def test_capture_and_handler_are_idempotent(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 5, person=a.slug)
    await install(client, a, "identity")
    job = (await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())).json()
    db = app_db(client)
    job_id, person_id = uuid.UUID(job["job_id"]), uuid.UUID(a.id)
    # The handler delivered twice (and concurrently): one run, one capture.
    await asyncio.gather(
        billing.execute_job(db, job_id, person_id, None), billing.execute_job(db, job_id, person_id, None)
    )
    await billing.execute_job(db, job_id, person_id, None)
    await Relay(db).drain()
    done = (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()
    assert done["status"] == "succeeded" and done["credits_captured"] == 1
    entries = (await client.get(f"/v1/credits/ledger?job_id={job['job_id']}", headers=a.h())).json()["items"]
    assert sorted(e["kind"] for e in entries) == ["capture", "hold"]
    assert len(await events_named(db, "jobs/job.succeeded", a.id)) == 1
    # A ledger key can be written once: a replayed grant returns the first entry.
    again = await grant(client, admin, 5, person=a.slug, key="grant-1")
    assert await grant(client, admin, 5, person=a.slug, key="grant-1") == again
    assert (await client.get("/v1/credits", headers=a.h())).json()["balance"] == 4 + 5
    assert_consistent(await ledger_state(db, a.id))


async def test_cancel_releases_and_a_result_arriving_later_changes_nothing(client: httpx.AsyncClient) -> None:
    from tests.support import billing as support

    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 10, person=a.slug)
    gate = uuid.uuid4().hex
    job = (
        await client.post(
            "/v1/run/tests/gated",
            json={"input": {"gate": gate, "client_name": f"Ghost {gate}"}},
            headers=a.h(),
        )
    ).json()
    db = app_db(client)
    running_job = asyncio.create_task(
        billing.execute_job(db, uuid.UUID(job["job_id"]), uuid.UUID(a.id), None)
    )
    await asyncio.wait_for(support.entered.setdefault(gate, asyncio.Event()).wait(), 10)
    assert (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()["status"] == "running"

    cancelled = await client.post(f"/v1/jobs/{job['job_id']}/cancel", headers=a.h())
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert (await client.post(f"/v1/jobs/{job['job_id']}/cancel", headers=a.h())).status_code == 200
    support.gates.setdefault(gate, asyncio.Event()).set()
    await asyncio.wait_for(running_job, 10)

    done = (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()
    assert (
        done["status"] == "cancelled" and done["credits_captured"] == 0 and done["hold_status"] == "released"
    )
    # The action's own writes were rolled back with it: no result, no charge.
    clients = (await client.get(f"/v1/clients?q=Ghost {gate}", headers=a.h())).json()["items"]
    assert clients == []
    assert (await client.get("/v1/credits", headers=a.h())).json()["available"] == 10
    assert_consistent(await ledger_state(db, a.id))


async def test_cancel_rules(client: httpx.AsyncClient) -> None:
    admin, owner, member = await make_admin(client), await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, member)
    await grant(client, admin, 5, org=org)
    await install(client, owner, "identity", org=org)
    mine = (
        await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=owner.h(org=org))
    ).json()
    refused = await client.post(f"/v1/jobs/{mine['job_id']}/cancel", headers=member.h(org=org))
    assert refused.status_code == 403 and refused.json()["code"] == "not_your_job"
    assert "owner or admin" in refused.json()["hint"]
    await Relay(app_db(client)).drain()
    finished = await client.post(f"/v1/jobs/{mine['job_id']}/cancel", headers=owner.h(org=org))
    assert finished.status_code == 409 and finished.json()["code"] == "job_finished"


async def test_jobs_and_ledgers_are_isolated_per_context(client: httpx.AsyncClient) -> None:
    admin, a, b = await make_admin(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    await grant(client, admin, 5, person=a.slug)
    await grant(client, admin, 6, org=org)
    await grant(client, admin, 7, person=b.slug)
    await install(client, a, "identity")
    await install(client, a, "identity", org=org)
    personal = (await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())).json()
    in_org = (await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h(org=org))).json()
    assert [j["id"] for j in (await client.get("/v1/jobs", headers=a.h())).json()["items"]] == [
        personal["job_id"]
    ]
    assert [j["id"] for j in (await client.get("/v1/jobs", headers=a.h(org=org))).json()["items"]] == [
        in_org["job_id"]
    ]
    assert (await client.get("/v1/jobs", headers=b.h())).json()["items"] == []
    for job_id in (personal["job_id"], in_org["job_id"]):
        assert (await client.get(f"/v1/jobs/{job_id}", headers=b.h())).status_code == 404
        assert (await client.post(f"/v1/jobs/{job_id}/cancel", headers=b.h())).status_code == 404
    assert (await client.get(f"/v1/jobs/{in_org['job_id']}", headers=a.h())).status_code == 404
    balances = [
        (await client.get("/v1/credits", headers=h)).json()["available"] for h in (a.h(), a.h(org=org), b.h())
    ]
    assert balances == [4, 5, 7]
    b_ledger = (await client.get("/v1/credits/ledger", headers=b.h())).json()["items"]
    assert [(e["kind"], e["amount"]) for e in b_ledger] == [("grant", 7)]


async def test_quote_then_402_with_a_hint(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    await install(client, a, "identity")
    quote = await client.post("/v1/quote/identity/resolve-person", json=PERSON, headers=a.h())
    assert quote.status_code == 200
    assert quote.json() == {
        "component": "identity",
        "action": "resolve-person",
        "credits": 1,
        "available": 0,
        "sufficient": False,
        "overage": "cap",
    }
    refused = await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())
    assert refused.status_code == 402
    assert refused.json()["code"] == "insufficient_credits" and "credits" in refused.json()["hint"]
    assert (refused.json()["required"], refused.json()["available"]) == (1, 0)
    unknown = await client.post("/v1/run/identity/nope", json=PERSON, headers=a.h())
    assert unknown.status_code == 404 and unknown.json()["code"] == "unknown_action"
    bad = await client.post(
        "/v1/quote/identity/resolve-person", json={"input": {"email": "nope"}}, headers=a.h()
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "input.email"
    none = await client.post("/v1/quote/identity/resolve-person", json={"input": {}}, headers=a.h())
    assert none.status_code == 422
    listed = await all_actions(client, a)
    person = next(x for x in listed if (x["component"], x["action"]) == ("identity", "resolve-person"))
    assert person["price"] == 1 and "email" in person["input_schema"]["properties"]


async def test_actions_listed_are_those_the_context_can_run(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    fresh = {x["component"] for x in await all_actions(client, a)}
    assert "identity" not in fresh  # running one would be refused: component_not_installed
    await install(client, a, "identity", org=org)
    assert "identity" not in {x["component"] for x in await all_actions(client, a)}
    # Other contexts' peers are not listed here: one page holds them all.
    in_org = await client.get("/v1/actions", params={"limit": 100}, headers=a.h(org=org))
    listed = {(x["component"], x["action"]) for x in in_org.json()["items"]}
    assert in_org.json()["next_cursor"] is None
    assert {("identity", "resolve-person"), ("identity", "resolve-company")} <= listed
    quote = await client.post("/v1/quote/identity/resolve-person", json=PERSON, headers=a.h(org=org))
    assert quote.status_code == 200, quote.text
    # Nor the actions this credential lacks the scope of (identity's need identity:read).
    key = await client.post(
        "/v1/api-keys", json={"name": "j", "scopes": ["jobs:*"], "org": org}, headers=a.h()
    )
    as_key = {"Authorization": f"Bearer {key.json()['token']}"}
    scoped = (await client.get("/v1/actions", params={"limit": 100}, headers=as_key)).json()["items"]
    assert not {x["component"] for x in scoped} & {"identity"}


async def test_expiring_grants_expire_what_is_left_never_what_is_held(client: httpx.AsyncClient) -> None:
    import tests.support.billing  # noqa: F401

    admin, a = await make_admin(client), await signup(client)
    soon = (dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).isoformat()
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=2)
    db = app_db(client)
    # The sweep reaches every tenant, and modules that ran before on this worker may have left
    # grants expiring within the two hours (test_settle_held leaves 74 credits): sweep them now,
    # before this test's grants exist, so the sweep below counts only this test's credits.
    async with db.system() as uow:
        await billing.sweep(uow, now=later)
    await grant(client, admin, 10, person=a.slug, expires_at=soon)
    await grant(client, admin, 3, person=a.slug)
    spent = (await client.post("/v1/run/tests/metered", json={"input": {"credits": 2}}, headers=a.h())).json()
    await Relay(db).drain()
    assert (await client.get(f"/v1/jobs/{spent['job_id']}", headers=a.h())).json()["credits_captured"] == 2
    # Captures spend the expiring credits first: 8 of the grant are left.
    held = (await client.post("/v1/run/tests/metered", json={"input": {"credits": 3}}, headers=a.h())).json()
    assert held["credits_held"] == 3
    async with db.system() as uow:
        # The held job's deadline is later still: only the grant expires in this sweep.
        await uow.session.execute(
            text("UPDATE billing.jobs SET deadline_at = :d WHERE id = :j"),
            {"d": later + dt.timedelta(hours=1), "j": uuid.UUID(held["job_id"])},
        )
        report = await billing.sweep(uow, now=later)
    # 11 owned, 3 held: 8 would expire, and 8 is exactly what is available.
    assert report.credits_expired == 8
    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (3, 3, 0)
    expiry = (await client.get("/v1/credits/ledger?kind=expiry", headers=a.h())).json()["items"]
    assert [e["amount"] for e in expiry] == [8]
    async with db.system() as uow:
        again = await billing.sweep(uow, now=later)
    assert again.credits_expired == 0
    assert_consistent(await ledger_state(db, a.id))


async def test_jobs_past_their_deadline_fail_and_release(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 5, person=a.slug)
    await install(client, a, "identity")
    job = (await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())).json()
    db = app_db(client)
    async with db.system() as uow:
        report = await billing.sweep(uow, now=dt.datetime.now(dt.UTC) + dt.timedelta(days=1))
    assert report.jobs_failed >= 1
    failed = (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()
    assert failed["status"] == "failed" and failed["error"]["code"] == "not_started"
    assert (await client.get("/v1/credits", headers=a.h())).json()["available"] == 5
    await billing.execute_job(db, uuid.UUID(job["job_id"]), uuid.UUID(a.id), None)  # late delivery: nothing
    assert (await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())).json()["status"] == "failed"
    assert_consistent(await ledger_state(db, a.id))


async def test_low_balance_fires_once_per_crossing(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    db = app_db(client)
    await install(client, a, "identity")
    await grant(client, admin, 5, person=a.slug)  # under the default threshold (10): fires
    assert len(await events_named(db, "billing/credits.low_balance", a.id)) == 1
    set_ = await client.put("/v1/credits/settings", json={"low_balance_threshold": 3}, headers=a.h())
    assert set_.status_code == 200 and set_.json()["low_balance_threshold"] == 3  # 5 >= 3: re-armed
    for _ in range(4):  # available 5 -> 1: crosses under 3 once
        assert (
            await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())
        ).status_code == 202
    fired = await events_named(db, "billing/credits.low_balance", a.id)
    assert len(fired) == 2 and fired[1]["available"] == 2 and fired[1]["threshold"] == 3
    await grant(client, admin, 10, person=a.slug)  # back above: re-armed
    await Relay(db).drain()
    for _ in range(9):
        await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())
    assert len(await events_named(db, "billing/credits.low_balance", a.id)) == 3


async def test_admin_routes_need_a_platform_admin(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    for method, path, body in (
        ("POST", "/v1/admin/credits/grants", {"person": a.slug, "credits": 100}),
        ("GET", "/v1/admin/peers", None),
        ("POST", f"/v1/admin/jobs/{uuid.uuid4()}/refund", {}),
    ):
        r = await client.request(method, path, json=body, headers=a.h())
        assert r.status_code == 403 and r.json()["code"] == "platform_admin_required", (path, r.text)
    admin = await make_admin(client)
    bad = await client.post("/v1/admin/credits/grants", json={"credits": 1}, headers=admin.h())
    assert bad.status_code == 422
    past = await client.post(
        "/v1/admin/credits/grants",
        json={"person": a.slug, "credits": 1, "expires_at": "2020-01-01T00:00:00Z"},
        headers=admin.h(),
    )
    assert past.status_code == 422 and past.json()["code"] == "expired_grant"
    assert "future `expires_at`" in past.json()["hint"]


async def test_refund_gives_back_a_charge_once(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 5, person=a.slug)
    await install(client, a, "identity")
    job = (await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())).json()
    early = await client.post(f"/v1/admin/jobs/{job['job_id']}/refund", json={}, headers=admin.h())
    assert early.status_code == 409 and early.json()["code"] == "nothing_to_refund"
    assert "only a charge can be refunded" in early.json()["hint"]
    await Relay(app_db(client)).drain()
    first = await client.post(f"/v1/admin/jobs/{job['job_id']}/refund", json={}, headers=admin.h())
    again = await client.post(f"/v1/admin/jobs/{job['job_id']}/refund", json={}, headers=admin.h())
    assert first.status_code == again.status_code == 200 and first.json() == again.json()
    # Every field is optional, so is the body: none asks for the same refund.
    bare = await client.post(f"/v1/admin/jobs/{job['job_id']}/refund", headers=admin.h())
    assert bare.status_code == 200 and bare.json() == first.json()
    assert first.json()["kind"] == "refund" and first.json()["amount"] == 1
    assert (await client.get("/v1/credits", headers=a.h())).json()["balance"] == 5
    assert_consistent(await ledger_state(app_db(client), a.id))


async def test_a_second_refund_asking_for_something_else_is_refused(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 100, person=a.slug)
    job = (
        await client.post("/v1/run/tests/metered-overage", json={"input": {"credits": 50}}, headers=a.h())
    ).json()
    db = app_db(client)
    await Relay(db).drain()
    refund = f"/v1/admin/jobs/{job['job_id']}/refund"
    too_much = (await client.post(refund, json={"credits": 51}, headers=admin.h())).json()
    assert too_much["code"] == "refund_too_large" and "at most 50" in too_much["hint"]
    first = await client.post(refund, json={"credits": 10, "memo": "late"}, headers=admin.h())
    assert first.status_code == 200 and first.json()["amount"] == 10
    # The same refund asked again (memo given or not) is the first one, and records nothing.
    for same in ({"credits": 10, "memo": "late"}, {"credits": 10}):
        again = await client.post(refund, json=same, headers=admin.h())
        assert again.status_code == 200 and again.json() == first.json()
    for other in ({"credits": 20}, {}, {"credits": 10, "memo": "another reason"}):
        refused = await client.post(refund, json=other, headers=admin.h())
        body = refused.json()
        assert refused.status_code == 409 and body["code"] == "already_refunded", other
        assert "10 credits" in body["hint"] and "once" in body["hint"] and body["refunded_credits"] == 10
    assert (await client.get("/v1/credits", headers=a.h())).json()["balance"] == 100 - 50 + 10
    audited = await system_sql(
        db,
        "SELECT count(*) FROM platform.audit_log WHERE action = 'credits.refund' AND target_id = :j",
        {"j": job["job_id"]},
    )
    assert audited.scalar_one() == 1
    assert_consistent(await ledger_state(db, a.id))


async def test_purchase_webhook_is_signed_and_replay_safe(db: Database, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    unconfigured = await client.post("/v1/credits/purchases", json={"id": "x"})
    assert unconfigured.status_code == 403 and unconfigured.json()["code"] == "webhook_not_configured"

    secret, old_secret = webhooks.new_secret(), webhooks.new_secret()
    # Mid-rotation: the newest key first, the old one still accepted.
    settings = db.settings.model_copy(update={"billing_webhook_secret": f"{secret},{old_secret}"})
    shop_db = Database(settings)
    try:
        async with app_client(shop_db) as shop:
            event = {
                "id": f"evt_{uuid.uuid4().hex}",
                "type": "credits.purchased",
                "data": {
                    "tenant_id": a.id,
                    "credits": 250,
                    "amount": 2500,
                    "currency": "EUR",
                    "reference": "pi_1",
                },
            }
            body, headers = signed(secret, event)
            first = await shop.post("/v1/credits/purchases", content=body, headers=headers)
            replay = await shop.post("/v1/credits/purchases", content=body, headers=headers)
            assert first.status_code == 200 and first.json()["applied"] is True
            assert replay.status_code == 200 and replay.json()["applied"] is False
            # Concurrent deliveries of one new event: applied once.
            event2 = {**event, "id": f"evt_{uuid.uuid4().hex}"}
            body2, headers2 = signed(secret, event2)
            both = await asyncio.gather(
                *(shop.post("/v1/credits/purchases", content=body2, headers=headers2) for _ in range(5))
            )
            assert sorted(r.json()["applied"] for r in both) == [False, False, False, False, True]

            stale_body, stale = signed(
                secret, {**event, "id": "evt_stale"}, timestamp=int(time.time()) - 3600
            )
            r = await shop.post("/v1/credits/purchases", content=stale_body, headers=stale)
            assert r.status_code == 401 and r.json()["code"] == "signature_stale"
            forged_body, forged = signed(webhooks.new_secret(), {**event, "id": "evt_forged"})
            r = await shop.post("/v1/credits/purchases", content=forged_body, headers=forged)
            assert r.status_code == 401 and r.json()["code"] == "signature_invalid" and r.json()["hint"]
            tampered = body.replace(b"250", b"999")
            r = await shop.post("/v1/credits/purchases", content=tampered, headers=headers)
            assert r.status_code == 401 and r.json()["code"] == "signature_invalid"
            # The retired format (one HMAC under X-Atlilith-Signature) is not a signature any more.
            legacy = {
                "X-Atlilith-Timestamp": headers["webhook-timestamp"],
                "X-Atlilith-Signature": "sha256=00",
            }
            r = await shop.post("/v1/credits/purchases", content=body, headers=legacy)
            assert r.status_code == 401 and r.json()["code"] == "signature_missing"
            # The key being rotated out still works during the overlap.
            rotated_body, rotated = signed(old_secret, event)
            r = await shop.post("/v1/credits/purchases", content=rotated_body, headers=rotated)
            assert r.status_code == 200 and r.json()["applied"] is False
            unknown_body, unknown = signed(
                secret, {**event, "id": "evt_unknown", "data": {"tenant_id": str(uuid.uuid4()), "credits": 1}}
            )
            r = await shop.post("/v1/credits/purchases", content=unknown_body, headers=unknown)
            assert r.status_code == 422 and r.json()["code"] == "unknown_tenant"
    finally:
        await shop_db.dispose()
    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert balance["balance"] == 500
    kinds = [
        (e["kind"], e["amount"])
        for e in (await client.get("/v1/credits/ledger", headers=a.h())).json()["items"]
    ]
    assert kinds == [("purchase", 250), ("purchase", 250)]
    assert_consistent(await ledger_state(db, a.id))


async def test_data_entities_serve_the_context(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 5, person=a.slug)
    await install(client, a, "identity")
    await client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h())
    await Relay(app_db(client)).drain()
    usage = (await client.get("/v1/data/billing.usage", headers=a.h())).json()
    assert usage["entity"] == "billing.usage"
    assert [
        (u["component"], u["action"], u["jobs"], u["succeeded"], u["credits_captured"])
        for u in usage["items"]
    ] == [("identity", "resolve-person", 1, 1, 1)]
    made = (
        await client.post("/v1/clients", json={"name": "Ada", "email": "ada@example.com"}, headers=a.h())
    ).json()
    persons = (await client.get("/v1/data/identity.persons", headers=a.h())).json()["items"]
    assert persons == [{"client_id": made["id"], "polyseme_person_id": made["polyseme_person_id"]}]
    missing = await client.get("/v1/data/nothing.here", headers=a.h())
    assert missing.status_code == 404 and missing.json()["code"] == "unknown_entity"
