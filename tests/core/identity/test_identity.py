"""Identity, the polyseme resolver: deterministic normalization, one stable id per real-world
entity within a tenant (the same from every component), unrelated ids across tenants."""

from __future__ import annotations

import uuid

import httpx
import pytest
from sqlalchemy import text

from core.config import Settings
from core.identity import polyseme
from core.relay import Relay
from tests.conftest import make_org, signup
from tests.support.billing import app_db, assert_consistent, grant, ledger_state, make_admin
from tests.support.registry import install


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Ada.Lovelace@Example.COM", "ada.lovelace@example.com"),
        ("  ada@example.com ", "ada@example.com"),
    ],
)
def test_email_normalization(raw: str, expected: str) -> None:
    assert polyseme.email(raw) == expected


@pytest.mark.parametrize("raw", ["+33 6 12 34 56 78", "+33612345678", "0033 612-345-678", "06 12 34 56 78"])
def test_phone_normalization_to_e164(raw: str) -> None:
    assert polyseme.phone(raw, "FR") == "+33612345678"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://www.Cocotte.maison/contact?x=1", "cocotte.maison"),
        ("shop.cocotte.maison", "cocotte.maison"),
        ("ada@mail.example.co.uk", "example.co.uk"),
        ("EXAMPLE.COM.", "example.com"),
        ("http://bücher.de", "xn--bcher-kva.de"),
    ],
)
def test_domain_normalization(raw: str, expected: str) -> None:
    assert polyseme.domain(raw) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Cocotte S.A.S.", "cocotte"),
        ("cocotte sas", "cocotte"),
        ("Société Générale SA", "societe generale"),
        ("Acme, Inc.", "acme"),
        ("Smith & Sons Ltd", "smith and sons"),
        ("Co", "co"),  # never empties a name
    ],
)
def test_company_name_normalization(raw: str, expected: str) -> None:
    assert polyseme.company_name(raw) == expected


@pytest.mark.parametrize("bad", ["localhost", "not a domain", "http://", "192.168.0.1"])
def test_bad_domains_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        polyseme.domain(bad)


def test_handles_and_ids() -> None:
    assert polyseme.handle(" @Ada.Lovelace ") == "ada.lovelace"
    with pytest.raises(ValueError):
        polyseme.handle("@ no spaces")
    t1, t2 = uuid.uuid4(), uuid.uuid4()
    one = polyseme.stable_id("k", t1, "email", "ada@example.com")
    assert one == polyseme.stable_id("k", t1, "email", "ada@example.com")  # deterministic
    assert one.version == 8
    assert one != polyseme.stable_id("k", t2, "email", "ada@example.com")  # per tenant
    assert one != polyseme.stable_id("other-key", t1, "email", "ada@example.com")  # keyed
    assert one != polyseme.stable_id("k", t1, "handle", "ada@example.com")  # per kind
    # Nothing public derives it: not a name-based UUID of the value.
    assert one not in {
        uuid.uuid5(uuid.NAMESPACE_DNS, "ada@example.com"),
        uuid.uuid3(uuid.NAMESPACE_DNS, "ada@example.com"),
    }


def test_identity_secret_is_required_in_production(tmp_path: object) -> None:
    with pytest.raises(RuntimeError, match="IDENTITY_SECRET"):
        Settings(env="production").resolved_identity_secret()
    assert Settings(identity_secret="x" * 40).resolved_identity_secret() == "x" * 40


async def test_resolve_person_is_stable_across_components_and_charged(client: httpx.AsyncClient) -> None:
    admin, a = await make_admin(client), await signup(client)
    await grant(client, admin, 10, person=a.slug)
    await install(client, a, "identity")
    made = (
        await client.post(
            "/v1/clients",
            json={"name": "Ada", "email": "Ada@Example.com", "phone": "+33 6 12 34 56 78"},
            headers=a.h(),
        )
    ).json()
    assert made["polyseme_person_id"]
    resolved = await client.post(
        "/v1/identity/resolve-person", json={"email": " ADA@example.com "}, headers=a.h()
    )
    assert resolved.status_code == 200, resolved.text
    body = resolved.json()
    assert body["polyseme_id"] == made["polyseme_person_id"] and body["matched_on"] == "email"
    assert body["client_ids"] == [made["id"]] and body["credits_charged"] == 1
    assert body["normalized"] == {"email": "ada@example.com"}
    # By phone alone: that identifier's own id, and it still finds the client.
    by_phone = (
        await client.post("/v1/identity/resolve-person", json={"phone": "+33612345678"}, headers=a.h())
    ).json()
    assert by_phone["matched_on"] == "phone" and by_phone["client_ids"] == [made["id"]]
    both = (
        await client.post(
            "/v1/identity/resolve-person",
            json={"email": "ada@example.com", "phone": "+33612345678"},
            headers=a.h(),
        )
    ).json()
    assert both["polyseme_id"] == body["polyseme_id"] and both["ids"]["phone"] == by_phone["polyseme_id"]
    # The async door gives the same answer, as a job.
    run = (
        await client.post(
            "/v1/run/identity/resolve-person", json={"input": {"email": "ada@EXAMPLE.com"}}, headers=a.h()
        )
    ).json()
    await Relay(app_db(client)).drain()
    job = (await client.get(f"/v1/jobs/{run['job_id']}", headers=a.h())).json()
    assert job["status"] == "succeeded" and job["output"]["polyseme_id"] == body["polyseme_id"]
    assert job["usage"] == {"lookups": 1}
    # Every resolution was a job with its hold and capture.
    sync_job = (await client.get(f"/v1/jobs/{body['job_id']}", headers=a.h())).json()
    assert sync_job["status"] == "succeeded" and sync_job["credits_captured"] == 1
    assert (await client.get("/v1/credits", headers=a.h())).json()["balance"] == 10 - 4
    assert_consistent(await ledger_state(app_db(client), a.id))


async def test_client_ids_follow_changes_and_matching(client: httpx.AsyncClient) -> None:
    from core.tenancy.matching import find_or_create_client

    a = await signup(client)
    made = (
        await client.post("/v1/clients", json={"name": "Bo", "phone": "+33698765432"}, headers=a.h())
    ).json()
    by_phone = made["polyseme_person_id"]
    updated = (
        await client.patch(f"/v1/clients/{made['id']}", json={"email": "bo@example.com"}, headers=a.h())
    ).json()
    assert updated["polyseme_person_id"] not in (None, by_phone)  # an email now names the person
    db = app_db(client)
    async with db.uow() as uow:
        from core.opener import open_context

        ctx = await open_context(uow, a.token)
        matched, created = await find_or_create_client(
            ctx, uow, name="Cy", email="CY@example.com", phone=None
        )
    assert created and matched.polyseme_person_id == polyseme.client_person_id(
        db.settings, uuid.UUID(a.id), "cy@example.com", None
    )


async def test_no_cross_tenant_correlation(client: httpx.AsyncClient) -> None:
    admin, a, b = await make_admin(client), await signup(client), await signup(client)
    org = await make_org(client, a)
    for kw in ({"person": a.slug}, {"org": org}, {"person": b.slug}):
        await grant(client, admin, 5, **kw)
    await install(client, a, "identity")
    await install(client, a, "identity", org=org)
    await install(client, b, "identity")
    mine = (
        await client.post(
            "/v1/clients", json={"name": "Secret", "email": "shared@example.com"}, headers=a.h()
        )
    ).json()
    views = {}
    for label, headers in (("a", a.h()), ("a-org", a.h(org=org)), ("b", b.h())):
        r = (
            await client.post(
                "/v1/identity/resolve-person", json={"email": "shared@example.com"}, headers=headers
            )
        ).json()
        views[label] = r
    ids = {label: v["polyseme_id"] for label, v in views.items()}
    assert len(set(ids.values())) == 3  # one person, three tenants, three unrelated ids
    assert views["a"]["client_ids"] == [mine["id"]]
    assert views["b"]["client_ids"] == [] and views["a-org"]["client_ids"] == []
    company = {
        label: (
            await client.post(
                "/v1/identity/resolve-company", json={"domain": "https://www.acme.com"}, headers=h
            )
        ).json()
        for label, h in (("a", a.h()), ("b", b.h()))
    }
    assert company["a"]["polyseme_id"] != company["b"]["polyseme_id"]
    assert company["a"]["normalized"] == {"domain": "acme.com"}
    again = (
        await client.post(
            "/v1/identity/resolve-company", json={"domain": "acme.com", "name": "ACME Inc"}, headers=a.h()
        )
    ).json()
    assert again["polyseme_id"] == company["a"]["polyseme_id"] and again["normalized"]["name"] == "acme"


async def test_identity_input_errors_and_payment(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    await install(client, a, "identity")
    none = await client.post("/v1/identity/resolve-person", json={}, headers=a.h())
    assert none.status_code == 422
    bad = await client.post("/v1/identity/resolve-person", json={"email": "not-an-email"}, headers=a.h())
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "email"
    # The body is flat: the field is named as the caller wrote it, not as a job's `input.phone`.
    local = await client.post("/v1/identity/resolve-person", json={"phone": "12"}, headers=a.h())
    assert local.status_code == 422 and local.json()["errors"][0]["field"] == "phone"
    assert "/v1/actions" not in local.json()["hint"]
    broke = await client.post("/v1/identity/resolve-person", json={"email": "ada@example.com"}, headers=a.h())
    assert broke.status_code == 402 and broke.json()["code"] == "insufficient_credits"
    # Nothing was recorded for refused calls.
    assert (await client.get("/v1/jobs", headers=a.h())).json()["items"] == []


async def test_dedupe_clients_fills_ids_and_reports_duplicates_priced_per_row(
    client: httpx.AsyncClient,
) -> None:
    admin, a = await make_admin(client), await signup(client)
    org = await make_org(client, a)
    await grant(client, admin, 10, org=org)
    await install(client, a, "identity", org=org)
    h = a.h(org=org)
    ids = []
    for i in range(150):
        phone = "+33611111111" if i < 2 else None
        ids.append(
            (
                await client.post(
                    "/v1/clients",
                    json={"name": f"C{i}", "email": f"c{i}@example.com", "phone": phone},
                    headers=h,
                )
            ).json()["id"]
        )
    twin = (
        await client.post("/v1/clients", json={"name": "Twin", "phone": "+33622222222"}, headers=h)
    ).json()["id"]
    twin2 = (
        await client.post("/v1/clients", json={"name": "Twin 2", "phone": "+33622222222"}, headers=h)
    ).json()["id"]
    db = app_db(client)
    async with db.system() as uow:  # clients from before identity existed: no id yet
        await uow.session.execute(
            text("UPDATE platform.clients SET polyseme_person_id = NULL WHERE id = ANY(:ids)"),
            {"ids": [uuid.UUID(x) for x in ids[:40]]},
        )
    quote = (await client.post("/v1/quote/identity/dedupe-clients", json={"input": {}}, headers=h)).json()
    assert quote["credits"] == 2  # 152 clients: two blocks of 100
    run = (await client.post("/v1/run/identity/dedupe-clients", json={"input": {}}, headers=h)).json()
    assert run["credits_held"] == 2
    await Relay(db).drain()
    job = (await client.get(f"/v1/jobs/{run['job_id']}", headers=h)).json()
    assert job["status"] == "succeeded", job
    out = job["output"]
    assert out["rows"] == 152 and out["updated"] == 40
    groups = {(g["matched_on"], tuple(sorted(g["client_ids"]))) for g in out["groups"]}
    assert ("phone", tuple(sorted(ids[:2]))) in groups  # same phone, different emails
    assert ("polyseme_id", tuple(sorted([twin, twin2]))) in groups  # no email: the phone names them
    assert job["usage"] == {"rows": 152, "updated": 40} and job["credits_captured"] == 2
    persons = (await client.get("/v1/data/identity.persons?limit=100", headers=h)).json()["items"]
    assert all(p["polyseme_person_id"] for p in persons)
    assert_consistent(
        await ledger_state(db, (await client.get(f"/v1/orgs/{org}", headers=a.h())).json()["id"])
    )
