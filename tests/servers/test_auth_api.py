"""Sign-up, sign-in, refresh rotation, logout, context switching, API keys, token failures."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import httpx
import jwt
import pytest

from core.uow import Database
from tests.conftest import join_org, make_org, signup, slug
from tests.support.messaging import outbox


async def test_signup_creates_a_person_without_an_org(client: httpx.AsyncClient) -> None:
    acct = await signup(client)
    assert acct.data["context"] == {"kind": "personal", "org": None, "role": None}
    me = (await client.get("/v1/me", headers=acct.h())).json()
    assert me["person"]["slug"] == acct.slug and me["memberships"] == []
    assert me["credential"]["kind"] == "session"


async def test_login_by_email_or_slug_and_wrong_password(client: httpx.AsyncClient) -> None:
    acct = await signup(client)
    for login in (acct.slug, acct.email.upper()):
        r = await client.post("/v1/auth/login", json={"login": login, "password": acct.password})
        assert r.status_code == 200, r.text
    bad = await client.post("/v1/auth/login", json={"login": acct.slug, "password": "wrong-password"})
    assert bad.status_code == 401 and bad.json()["code"] == "invalid_credentials"
    unknown = await client.post("/v1/auth/login", json={"login": "nobody-here", "password": "x" * 12})
    assert unknown.status_code == 401 and unknown.json()["code"] == "invalid_credentials"


async def test_repeated_failures_lock_the_account(client: httpx.AsyncClient, db: Database) -> None:
    acct = await signup(client)
    for _ in range(db.settings.login_max_failures):
        await client.post("/v1/auth/login", json={"login": acct.slug, "password": "wrong-password"})
    locked = await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    assert locked.status_code == 429 and locked.json()["code"] == "login_locked"
    assert int(locked.headers["Retry-After"]) > 0


class _CountingVerify:
    """Wraps the password checker to count argon2 verifications (each one costs a full hash);
    with `hold`, every check waits at the gate, so a test can order arrivals exactly."""

    def __init__(self, db: Database, *, hold: bool = False) -> None:
        self.calls = 0
        self.gate = asyncio.Event()
        if not hold:
            self.gate.set()
        self._inner = db.passwords.verify

    async def __call__(self, stored_hash: str | None, password: str) -> bool:
        self.calls += 1
        await self.gate.wait()
        return await self._inner(stored_hash, password)


async def _login_burst(client: httpx.AsyncClient, login: str, passwords: list[str]) -> list[httpx.Response]:
    return await asyncio.gather(
        *(client.post("/v1/auth/login", json={"login": login, "password": pw}) for pw in passwords)
    )


async def test_parallel_wrong_passwords_cannot_pass_the_lockout(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await signup(client)
    limit = db.settings.login_max_failures
    verify = _CountingVerify(db)
    monkeypatch.setattr(db.passwords, "verify", verify)

    answers = await _login_burst(client, acct.slug, [f"wrong-password-{i}" for i in range(16)])

    codes = [r.status_code for r in answers]
    assert codes.count(401) <= limit and codes.count(401) + codes.count(429) == 16, codes
    assert verify.calls <= limit
    for r in answers:
        if r.status_code == 429:
            assert r.json()["code"] == "login_locked" and int(r.headers["Retry-After"]) > 0
    # The account stays locked: even the right password is refused, without a hash.
    calls = verify.calls
    after = await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    assert after.status_code == 429 and after.json()["code"] == "login_locked"
    assert verify.calls == calls


async def test_a_right_password_after_a_burst_of_wrong_ones_meets_the_lock(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wrong guesses are still being checked (held at the gate) when the right one arrives:
    it must meet the lock their count already set, not a gate nobody has closed yet."""
    acct = await signup(client)
    limit = db.settings.login_max_failures
    verify = _CountingVerify(db, hold=True)
    monkeypatch.setattr(db.passwords, "verify", verify)

    wrong = [
        asyncio.create_task(
            client.post("/v1/auth/login", json={"login": acct.slug, "password": f"wrong-password-{i}"})
        )
        for i in range(3 * limit)
    ]
    async with asyncio.timeout(10):
        while verify.calls < limit:
            await asyncio.sleep(0.01)
    await asyncio.sleep(0.2)  # the rest of the burst: refused, or (unfixed) waiting at the gate
    right = asyncio.create_task(
        client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    )
    await asyncio.sleep(0.2)
    verify.gate.set()
    answers = await asyncio.gather(*wrong)
    late = await right

    assert late.status_code == 429 and late.json()["code"] == "login_locked", late.text
    codes = [r.status_code for r in answers]
    assert codes.count(401) == limit and codes.count(429) == 2 * limit, codes
    assert verify.calls == limit
    after = await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    assert after.status_code == 429 and after.json()["code"] == "login_locked"


async def test_a_right_password_in_flight_does_not_lift_a_lock_set_after_it(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    acct = await signup(client)
    limit = db.settings.login_max_failures
    verify = _CountingVerify(db, hold=True)
    monkeypatch.setattr(db.passwords, "verify", verify)

    def attempt(password: str) -> asyncio.Task[httpx.Response]:
        return asyncio.create_task(
            client.post("/v1/auth/login", json={"login": acct.slug, "password": password})
        )

    async def started(n: int) -> None:
        async with asyncio.timeout(10):
            while verify.calls < n:
                await asyncio.sleep(0.01)

    right = attempt(acct.password)
    await started(1)
    wrong = [attempt(f"wrong-password-{i}") for i in range(limit - 1)]
    await started(limit)  # the last of these filled the budget: the account is locked
    verify.gate.set()

    assert (await right).status_code == 200  # it was within the budget
    assert [r.status_code for r in await asyncio.gather(*wrong)] == [401] * (limit - 1)
    after = await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    assert after.status_code == 429 and after.json()["code"] == "login_locked"


async def test_a_right_password_clears_the_count(client: httpx.AsyncClient, db: Database) -> None:
    acct = await signup(client)
    limit = db.settings.login_max_failures
    for _ in range(limit - 1):
        r = await client.post("/v1/auth/login", json={"login": acct.slug, "password": "wrong-password"})
        assert r.status_code == 401
    ok = await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    assert ok.status_code == 200, ok.text
    for _ in range(limit - 1):  # a fresh budget after a success
        r = await client.post("/v1/auth/login", json={"login": acct.slug, "password": "wrong-password"})
        assert r.status_code == 401
    ok = await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})
    assert ok.status_code == 200, ok.text


async def test_person_level_routes_refuse_an_org_header_you_are_not_a_member_of(
    client: httpx.AsyncClient,
) -> None:
    me, other = await signup(client), await signup(client)
    mine, theirs = await make_org(client, me), await make_org(client, other)
    reads = ["/v1/api-keys", "/v1/orgs", "/v1/me/invitations", "/v1/bookings/feeds"]

    for org in (theirs, "no-such-org-" + uuid.uuid4().hex[:8]):
        for path in reads:
            r = await client.get(path, headers=me.h(org))
            assert r.status_code == 403 and r.json()["code"] == "not_a_member", (path, org, r.text)
        r = await client.patch("/v1/me", json={"display_name": "Renamed"}, headers=me.h(org))
        assert r.status_code == 403 and r.json()["code"] == "not_a_member", (org, r.text)
        r = await client.post("/v1/orgs", json={"slug": slug("o"), "name": "X"}, headers=me.h(org))
        assert r.status_code == 403 and r.json()["code"] == "not_a_member", (org, r.text)

    # A real membership or `personal` is fine, and the route still acts at person level.
    for org in (mine, "personal"):
        for path in reads:
            r = await client.get(path, headers=me.h(org))
            assert r.status_code == 200, (path, org, r.text)
        orgs = (await client.get("/v1/orgs", headers=me.h(org))).json()
        assert [o["slug"] for o in orgs["items"]] == [mine]
        r = await client.patch("/v1/me", json={"display_name": "Renamed"}, headers=me.h(org))
        assert r.status_code == 200 and r.json()["display_name"] == "Renamed", r.text
    assert (await client.get("/v1/me", headers=me.h())).json()["person"]["display_name"] == "Renamed"


async def test_refresh_rotates_and_reuse_revokes_the_session(client: httpx.AsyncClient) -> None:
    acct = await signup(client)
    first = await client.post("/v1/auth/refresh", json={"refresh_token": acct.refresh})
    assert first.status_code == 200
    new = first.json()
    assert new["refresh_token"] != acct.refresh
    assert (await client.get("/v1/me", headers=acct.h(token=new["access_token"]))).status_code == 200

    reuse = await client.post("/v1/auth/refresh", json={"refresh_token": acct.refresh})
    assert reuse.status_code == 401 and reuse.json()["code"] == "refresh_reused"
    # The whole family is gone: the rotated token and the access tokens of the session.
    r = await client.post("/v1/auth/refresh", json={"refresh_token": new["refresh_token"]})
    assert r.status_code == 401
    me = await client.get("/v1/me", headers=acct.h(token=new["access_token"]))
    assert me.status_code == 401 and me.json()["code"] == "session_revoked"


async def test_logout_ends_the_session_at_once(client: httpx.AsyncClient) -> None:
    acct = await signup(client)
    other = (await client.post("/v1/auth/login", json={"login": acct.slug, "password": acct.password})).json()
    assert (await client.post("/v1/auth/logout", headers=acct.h())).status_code == 204
    assert (await client.get("/v1/me", headers=acct.h())).json()["code"] == "session_revoked"
    assert (await client.post("/v1/auth/refresh", json={"refresh_token": acct.refresh})).status_code == 401
    # Another device stays signed in until logout with all_devices.
    assert (await client.get("/v1/me", headers=acct.h(token=other["access_token"]))).status_code == 200
    r = await client.post(
        "/v1/auth/logout", json={"all_devices": True}, headers=acct.h(token=other["access_token"])
    )
    assert r.status_code == 204
    assert (await client.get("/v1/me", headers=acct.h(token=other["access_token"]))).status_code == 401


async def test_switch_context_and_membership_rechecked_every_request(client: httpx.AsyncClient) -> None:
    owner, member = await signup(client, "own"), await signup(client, "mem")
    org = await make_org(client, owner)
    await join_org(client, org, owner, member)

    sw = await client.post("/v1/auth/switch", json={"org": org}, headers=member.h())
    assert sw.status_code == 200, sw.text
    org_token = sw.json()["access_token"]
    claims = jwt.decode(org_token, options={"verify_signature": False})
    assert claims["org_role"] == "member" and claims["org_id"] and claims["sub"] == member.id
    me = (await client.get("/v1/me", headers=member.h(token=org_token))).json()
    assert me["context"]["kind"] == "org" and me["context"]["org"]["slug"] == org

    # Refresh keeps the context the device switched to.
    refreshed = (await client.post("/v1/auth/refresh", json={"refresh_token": member.refresh})).json()
    assert refreshed["context"]["org"]["slug"] == org

    assert (
        await client.delete(f"/v1/orgs/{org}/members/{member.slug}", headers=owner.h())
    ).status_code == 204
    refused = await client.get("/v1/clients", headers=member.h(token=org_token))
    assert refused.status_code == 403 and refused.json()["code"] == "not_a_member"
    # Personal context still works with the same token, and switching to the org is refused.
    assert (
        await client.get("/v1/clients", headers=member.h(org="personal", token=org_token))
    ).status_code == 200
    no = await client.post("/v1/auth/switch", json={"org": org}, headers=member.h())
    assert no.status_code == 403
    back = await client.post("/v1/auth/switch", json={"org": None}, headers=member.h(token=org_token))
    assert back.status_code == 200 and back.json()["context"]["kind"] == "personal"


async def test_bad_tokens_get_401_with_a_clear_problem(client: httpx.AsyncClient, db: Database) -> None:
    acct = await signup(client)
    claims = jwt.decode(acct.token, options={"verify_signature": False})
    secret = db.settings.jwt_secret
    assert secret
    now = int(dt.datetime.now(dt.UTC).timestamp())
    cases = {
        "token_expired": jwt.encode(
            {**claims, "iat": now - 7200, "exp": now - 3600}, secret, algorithm="HS256"
        ),
        "token_invalid": jwt.encode(claims, "another-secret-" + "y" * 40, algorithm="HS256"),
        "token_wrong_audience": jwt.encode({**claims, "aud": "someone-else"}, secret, algorithm="HS256"),
    }
    unsigned = jwt.encode(claims, "", algorithm="none")  # PyJWT reads "" as no key, as None
    malformed_key = ("api_key_invalid", "atl_not-a-key")
    for code, token in [
        *cases.items(),
        ("token_invalid", unsigned),
        ("token_invalid", "garbage"),
        malformed_key,
    ]:
        r = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 401, (code, r.text)
        body = r.json()
        assert (
            body["code"] == code and body["hint"] and r.headers["content-type"] == "application/problem+json"
        )
        assert r.headers["WWW-Authenticate"] == f'Bearer error="invalid_token", error_description="{code}"'
    # No credential (or another scheme): no error code, as RFC 6750 asks; the body still says why.
    for headers in ({}, {"Authorization": "Basic YTpi"}):
        missing = await client.get("/v1/me", headers=headers)
        assert missing.status_code == 401 and missing.json()["code"] == "missing_credential"
        assert missing.headers["WWW-Authenticate"] == "Bearer"


async def test_api_keys_shown_once_scoped_revocable(client: httpx.AsyncClient) -> None:
    owner = await signup(client)
    org = await make_org(client, owner)
    created = await client.post(
        "/v1/api-keys", json={"name": "agent", "scopes": ["tenancy:read"], "org": org}, headers=owner.h()
    )
    assert created.status_code == 201, created.text
    key = created.json()
    token = key["token"]
    assert token.startswith("atl_") and key["org"]["slug"] == org
    listed = (await client.get("/v1/api-keys", headers=owner.h())).json()["items"]
    assert [k["id"] for k in listed] == [key["id"]] and "token" not in listed[0]

    me = (await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})).json()
    assert me["credential"]["kind"] == "api_key" and me["context"]["org"]["slug"] == org
    assert (await client.get("/v1/clients", headers={"Authorization": f"Bearer {token}"})).status_code == 200
    # Scope: read only.
    w = await client.post("/v1/clients", json={"name": "X"}, headers={"Authorization": f"Bearer {token}"})
    assert w.status_code == 403 and w.json()["code"] == "missing_scope"
    # Bound to its org: cannot act elsewhere.
    p = await client.get(
        "/v1/clients", headers={"Authorization": f"Bearer {token}", "X-Atlilith-Org": "personal"}
    )
    assert p.status_code == 403 and p.json()["code"] == "api_key_org_mismatch"
    # A key cannot mint keys.
    mint = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["*"]}, headers={"Authorization": f"Bearer {token}"}
    )
    assert mint.status_code == 403 and mint.json()["code"] == "session_required"

    assert (await client.delete(f"/v1/api-keys/{key['id']}", headers=owner.h())).status_code == 200
    gone = await client.get("/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert gone.status_code == 401 and gone.json()["code"] == "api_key_invalid"
    again = await client.delete(f"/v1/api-keys/{key['id']}", headers=owner.h())
    assert again.status_code == 200 and again.json()["revoked_at"]

    bad_scope = await client.post(
        "/v1/api-keys", json={"name": "x", "scopes": ["nope:read"]}, headers=owner.h()
    )
    assert bad_scope.status_code == 422 and bad_scope.json()["code"] == "unknown_scope"


async def test_a_key_asked_for_in_an_org_is_bound_to_it(client: httpx.AsyncClient) -> None:
    """`X-Atlilith-Org` with no `org` in the body binds the key to that org (it used to make a key
    for every org of the person); an explicit `"org": null` still asks for an unbound one."""
    owner = await signup(client)
    org = await make_org(client, owner)
    asked_in_org = await client.post(
        "/v1/api-keys", json={"name": "org agent", "scopes": ["*"]}, headers=owner.h(org=org.upper())
    )
    assert asked_in_org.status_code == 201, asked_in_org.text
    assert asked_in_org.json()["org"]["slug"] == org
    elsewhere = await client.get(
        "/v1/me",
        headers={"Authorization": f"Bearer {asked_in_org.json()['token']}", "X-Atlilith-Org": "personal"},
    )
    assert elsewhere.status_code == 403 and elsewhere.json()["code"] == "api_key_org_mismatch"
    unbound = await client.post(
        "/v1/api-keys", json={"name": "any", "scopes": ["*"], "org": None}, headers=owner.h(org=org)
    )
    personal = await client.post("/v1/api-keys", json={"name": "mine", "scopes": ["*"]}, headers=owner.h())
    assert unbound.json()["org"] is None and personal.json()["org"] is None
    # A session switched into the org asks in it too, header or not.
    switched = await client.post("/v1/auth/switch", json={"org": org}, headers=owner.h())
    assert switched.status_code == 200, switched.text
    in_switched = await client.post(
        "/v1/api-keys",
        json={"name": "switched", "scopes": ["*"]},
        headers=owner.h(token=switched.json()["access_token"]),
    )
    assert in_switched.status_code == 201 and in_switched.json()["org"]["slug"] == org, in_switched.text
    back_home = await client.post(
        "/v1/api-keys",
        json={"name": "home", "scopes": ["*"]},
        headers=owner.h(org="personal", token=switched.json()["access_token"]),
    )
    assert back_home.status_code == 201 and back_home.json()["org"] is None


async def test_removed_members_org_keys_are_revoked_by_the_handler(
    client: httpx.AsyncClient, db: Database
) -> None:
    from core.relay import Relay

    owner, member = await signup(client), await signup(client)
    org = await make_org(client, owner)
    await join_org(client, org, owner, member, "admin")
    key = (
        await client.post("/v1/api-keys", json={"name": "k", "scopes": ["*"], "org": org}, headers=member.h())
    ).json()
    personal_key = (
        await client.post("/v1/api-keys", json={"name": "p", "scopes": ["*"]}, headers=member.h())
    ).json()
    await client.delete(f"/v1/orgs/{org}/members/{member.slug}", headers=owner.h())
    await Relay(db).drain()
    keys = {k["id"]: k for k in (await client.get("/v1/api-keys", headers=member.h())).json()["items"]}
    assert keys[key["id"]]["revoked_at"] is not None
    assert keys[personal_key["id"]]["revoked_at"] is None
    [revoked] = await outbox(db, "platform/api_key.revoked", api_key_id=key["id"])
    assert (revoked["name"], revoked["reason"]) == ("k", "membership_ended")
    assert await outbox(db, "platform/api_key.revoked", api_key_id=personal_key["id"]) == []


async def test_signup_refuses_duplicates_and_bad_input_changing_nothing(client: httpx.AsyncClient) -> None:
    acct = await signup(client)
    dup = await client.post(
        "/v1/auth/signup",
        json={
            "email": f"other-{acct.email}",
            "password": "long-enough-pw",
            "slug": acct.slug,
            "display_name": "X",
        },
    )
    assert dup.status_code == 409 and dup.json()["code"] == "slug_taken"
    assert dup.json()["errors"][0]["field"] == "slug"
    dup_mail = await client.post(
        "/v1/auth/signup",
        json={"email": acct.email.upper(), "password": "long-enough-pw", "slug": slug(), "display_name": "X"},
    )
    assert dup_mail.status_code == 409 and dup_mail.json()["code"] == "email_taken"
    # Core names the operation; REST renders it as its own route.
    assert dup_mail.json()["hint"] == "sign in with `POST /v1/auth/login`"
    for bad, field in (
        (
            {"email": "not-an-email", "password": "long-enough-pw", "slug": slug(), "display_name": "X"},
            "email",
        ),
        ({"email": "a@example.com", "password": "short", "slug": slug(), "display_name": "X"}, "password"),
        (
            {
                "email": "a@example.com",
                "password": "long-enough-pw",
                "slug": "Bad Slug!",
                "display_name": "X",
            },
            "slug",
        ),
        (
            {"email": "a@example.com", "password": "long-enough-pw", "slug": "admin", "display_name": "X"},
            "slug",
        ),
        (
            {
                "email": "a@example.com",
                "password": "long-enough-pw",
                "slug": slug(),
                "display_name": "X",
                "x": 1,
            },
            "x",
        ),
    ):
        r = await client.post("/v1/auth/signup", json=bad)
        assert r.status_code == 422, r.text
        assert field in [e["field"] for e in r.json()["errors"]]
    # Nothing was created by the refused attempts.
    nobody = await client.post(
        "/v1/auth/login", json={"login": "a@example.com", "password": "long-enough-pw"}
    )
    assert nobody.status_code == 401


async def test_operator_token_command(db: Database, client: httpx.AsyncClient) -> None:
    from core.tenancy import operator_token

    owner = await signup(client)
    org = await make_org(client, owner)
    out = await operator_token(db, owner.slug, org, dt.timedelta(minutes=5))
    me = (await client.get("/v1/me", headers={"Authorization": f"Bearer {out.access_token}"})).json()
    assert me["context"]["org"]["slug"] == org
    assert uuid.UUID(me["person"]["id"]) == uuid.UUID(owner.id)
