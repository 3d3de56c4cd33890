"""Starting credits: the seeded person and org can run a job out of the box; a new tenant's
starting grant is a setting (0 by default), granted once however often its event is delivered."""

from __future__ import annotations

import asyncio
import uuid

import httpx
from sqlalchemy import text

from core.billing import ledger
from core.relay import Relay
from core.seed import ORG_SLUG, PERSON_SLUG, seed
from core.uow import Database
from servers.app import create_app
from tests.conftest import SEED_PASSWORD, make_org, running, signup
from tests.core.billing.test_credits import PERSON
from tests.support.billing import assert_consistent, ledger_state
from tests.support.registry import install


async def test_the_seeded_person_and_org_can_run_a_job_at_once(
    db: Database, client: httpx.AsyncClient
) -> None:
    first = await seed(db, SEED_PASSWORD)
    again = await seed(db, SEED_PASSWORD)
    assert again.credits_granted == 0 and first.credits_granted in (0, 2 * db.settings.seed_credits)
    login = await client.post("/v1/auth/login", json={"login": PERSON_SLUG, "password": SEED_PASSWORD})
    assert login.status_code == 200, login.text
    h = {"authorization": f"Bearer {login.json()['access_token']}"}
    for context in ({}, {"x-atlilith-org": ORG_SLUG}):
        balance = (await client.get("/v1/credits", headers={**h, **context})).json()
        # Granted once: a second seed (or a third) never tops it up.
        assert balance["balance"] >= 1 and balance["balance"] <= db.settings.seed_credits, balance
        seeded = [
            e
            for e in (await client.get("/v1/credits/ledger?kind=grant", headers={**h, **context})).json()[
                "items"
            ]
            if e["memo"] == "seeded credits"
        ]
        assert [e["amount"] for e in seeded] == [db.settings.seed_credits]
        # What `atlilith jobs run identity resolve-person` does.
        run = await client.post("/v1/run/identity/resolve-person", json=PERSON, headers={**h, **context})
        assert run.status_code == 202, run.text


async def test_a_new_tenant_starts_with_the_configured_grant_once(
    db: Database, client: httpx.AsyncClient
) -> None:
    # Default 0: a new person has no credits and no grant.
    assert db.settings.billing_starting_credits == 0
    nobody = await signup(client, "zero")
    await Relay(db).drain()
    assert (await client.get("/v1/credits", headers=nobody.h())).json()["balance"] == 0

    generous = Database(db.settings.model_copy(update={"billing_starting_credits": 25}))
    app = create_app(generous.settings, db=generous, run_relay=False)
    try:
        async with (
            running(app),
            httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
        ):
            a = await signup(c, "start")
            org = await make_org(c, a)
            await Relay(generous).drain()
            for context in (None, org):
                balance = (await c.get("/v1/credits", headers=a.h(context))).json()
                assert balance["balance"] == 25, (context, balance)
            # A redelivered event grants nothing more (the ledger key is per context).
            async with generous.system() as uow:
                assert not await ledger.grant_once(
                    uow, uuid.UUID(a.id), None, 25, reason="starting", memo="starting credits"
                )
            assert (await c.get("/v1/credits", headers=a.h())).json()["balance"] == 25
            assert_consistent(await ledger_state(generous, a.id))
    finally:
        await generous.dispose()


async def test_a_first_job_racing_the_grant_that_creates_the_account_is_held_not_refused(
    db: Database, client: httpx.AsyncClient
) -> None:
    """A new tenant's starting grant arrives through the relay, so a first job can run while the
    transaction creating the account is still open. The job's hold statement cannot see that row
    yet; it must wait for it and hold, never answer 402 "needs 1, 10 available"."""
    a = await signup(client, "racer")
    await install(client, a, "identity")
    async with db.system() as uow:
        rows = await uow.session.execute(
            text("SELECT count(*) FROM billing.accounts WHERE tenant_id = :t"), {"t": a.id}
        )
        assert rows.scalar_one() == 0  # the race needs the account not to exist yet

    async def waiting_on_a_lock() -> int:
        async with db.system() as uow:
            rows = await uow.session.execute(
                text(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND wait_event_type = 'Lock'"
                )
            )
            return int(rows.scalar_one())

    async with db.system() as granting:
        assert await ledger.grant_once(
            granting, uuid.UUID(a.id), None, 10, reason="starting", memo="starting credits"
        )
        await granting.session.flush()
        run = asyncio.create_task(client.post("/v1/run/identity/resolve-person", json=PERSON, headers=a.h()))
        for _ in range(200):
            if await waiting_on_a_lock() or run.done():
                break
            await asyncio.sleep(0.02)
        assert not run.done(), run.result().text  # it waits for the account being created
    response = await run
    assert response.status_code == 202, response.text
    balance = (await client.get("/v1/credits", headers=a.h())).json()
    assert (balance["balance"], balance["held"], balance["available"]) == (10, 1, 9), balance
    assert_consistent(await ledger_state(db, a.id))
