"""Browser sessions over REST: the refresh token in an HttpOnly cookie, CSRF proof on every use
of it, rotation, sign-out clearing the cookies, and the context a reload comes back to."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from http.cookies import SimpleCookie
from typing import Any

import httpx
import pytest

from tests.conftest import make_org, slug

LOCAL = "http://localhost:3040"


@pytest.fixture
async def browser_client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    """Addressed as localhost, where the cookies are not Secure (plain-http development)."""
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=LOCAL) as c:
        yield c


class Browser:
    """One person's cookie jar, kept by hand so every attribute can be asserted."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.jar: dict[str, str] = {}
        self.last: dict[str, Any] = {}
        self.body: dict[str, Any] = {}

    def take(self, response: httpx.Response) -> None:
        self.client.cookies.clear()  # this jar is the only one: every cookie sent is explicit
        self.last = {}
        for header in response.headers.get_list("set-cookie"):
            cookie = SimpleCookie()
            cookie.load(header)
            for name, morsel in cookie.items():
                self.last[name] = (morsel, header)
                if morsel["max-age"] == "0":
                    self.jar.pop(name, None)
                else:
                    self.jar[name] = morsel.value

    def cookie_header(self, **override: str) -> dict[str, str]:
        jar = {**self.jar, **override}
        return {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}

    async def signup(self) -> dict[str, Any]:
        s = slug("web")
        r = await self.client.post(
            "/v1/auth/signup",
            json={
                "email": f"{s}@example.com",
                "password": "pw-" + secrets.token_hex(8),
                "slug": s,
                "display_name": s,
                "refresh_cookie": True,
            },
        )
        assert r.status_code == 201, r.text
        self.take(r)
        self.body = r.json()
        return self.body

    async def refresh(
        self, *, csrf: str | None = "cookie", origin: str | None = None, **cookies: str
    ) -> httpx.Response:
        headers = self.cookie_header(**cookies)
        if csrf is not None:
            headers["X-CSRF-Token"] = self.jar.get("atlilith_csrf", "") if csrf == "cookie" else csrf
        if origin is not None:
            headers["Origin"] = origin
        r = await self.client.post("/v1/auth/refresh", headers=headers)
        if r.status_code == 200:
            self.take(r)
            self.body = r.json()
        self.client.cookies.clear()
        return r

    def h(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.body['access_token']}"}


async def test_login_puts_the_refresh_token_in_an_httponly_cookie(browser_client: httpx.AsyncClient) -> None:
    web = Browser(browser_client)
    body = await web.signup()
    assert body["refresh_token"] is None and body["access_token"]
    refresh, _raw = web.last["atlilith_refresh"]
    assert refresh["httponly"] and refresh["path"] == "/v1/auth" and refresh["samesite"].lower() == "strict"
    assert not refresh["secure"], "plain-http localhost keeps the cookie usable"
    csrf, _raw_csrf = web.last["atlilith_csrf"]
    assert not csrf["httponly"] and csrf["path"] == "/" and csrf["samesite"].lower() == "strict"
    assert int(refresh["max-age"]) > 86_400

    login = await browser_client.post(
        "/v1/auth/login",
        json={"login": body["person"]["slug"], "password": "nope-" * 3, "refresh_cookie": True},
    )
    assert login.status_code == 401 and "set-cookie" not in login.headers
    # Without the flag nothing changes for API clients: the token is in the body, no cookie.
    plain = await browser_client.post("/v1/auth/refresh", json={"refresh_token": "atr_" + "x" * 20})
    assert plain.status_code == 401 and plain.json()["code"] == "refresh_invalid"


async def test_cookies_are_secure_off_localhost(client: httpx.AsyncClient) -> None:
    web = Browser(client)  # http://testserver: any real host gets Secure cookies
    await web.signup()
    assert web.last["atlilith_refresh"][0]["secure"] and web.last["atlilith_csrf"][0]["secure"]


async def test_cookie_refresh_rotates_and_reuse_ends_the_session(browser_client: httpx.AsyncClient) -> None:
    web = Browser(browser_client)
    await web.signup()
    first_cookie = web.jar["atlilith_refresh"]
    r = await web.refresh()
    assert r.status_code == 200, r.text
    assert r.json()["refresh_token"] is None
    assert web.jar["atlilith_refresh"] != first_cookie
    assert (await browser_client.get("/v1/me", headers=web.h())).status_code == 200

    reuse = await web.refresh(atlilith_refresh=first_cookie)
    assert reuse.status_code == 401 and reuse.json()["code"] == "refresh_reused"
    after = await web.refresh()
    assert after.status_code == 401 and after.json()["code"] == "session_revoked"


async def test_refresh_without_csrf_proof_is_refused_and_changes_nothing(
    browser_client: httpx.AsyncClient,
) -> None:
    web = Browser(browser_client)
    await web.signup()
    csrf = web.jar["atlilith_csrf"]
    refusals = [
        await web.refresh(csrf=None),  # no header
        await web.refresh(csrf=("y" if csrf[0] == "x" else "x") + csrf[1:]),  # header differs from the cookie
        await web.refresh(csrf="forged.abc", atlilith_csrf="forged.abc"),  # equal but unsigned
        await web.refresh(origin="https://evil.example"),  # right proof, foreign page
    ]
    assert [r.status_code for r in refusals] == [403, 403, 403, 403]
    assert [r.json()["code"] for r in refusals] == [
        "csrf_failed",
        "csrf_failed",
        "csrf_failed",
        "csrf_origin",
    ]
    assert "X-CSRF-Token" in refusals[0].json()["hint"]
    # None of them rotated the token or raised the reuse alarm: the real page still refreshes.
    ok = await web.refresh(origin=LOCAL)
    assert ok.status_code == 200, ok.text
    nothing = await browser_client.post("/v1/auth/refresh")
    assert nothing.status_code == 401 and nothing.json()["code"] == "refresh_invalid"


async def test_a_csrf_token_fits_only_its_own_session(browser_client: httpx.AsyncClient) -> None:
    alice, bob = Browser(browser_client), Browser(browser_client)
    await alice.signup()
    await bob.signup()
    # Bob's valid, signed pair planted next to Alice's refresh cookie (e.g. from a sibling site).
    planted = await alice.refresh(csrf=bob.jar["atlilith_csrf"], atlilith_csrf=bob.jar["atlilith_csrf"])
    assert planted.status_code == 403 and planted.json()["code"] == "csrf_failed"
    assert (await alice.refresh()).status_code == 200
    assert (await bob.refresh()).status_code == 200
    assert alice.body["person"]["id"] != bob.body["person"]["id"]


async def test_reload_after_switch_comes_back_in_that_context_while_a_member(
    browser_client: httpx.AsyncClient,
) -> None:
    owner, member = Browser(browser_client), Browser(browser_client)
    await owner.signup()
    await member.signup()
    from tests.conftest import Account

    owner_acct = Account({**owner.body, "refresh_token": ""}, "")
    org = await make_org(browser_client, owner_acct)
    invited = await browser_client.post(
        f"/v1/orgs/{org}/invitations",
        json={"person": member.body["person"]["slug"], "role": "admin"},
        headers=owner.h(),
    )
    assert invited.status_code == 201, invited.text
    accepted = await browser_client.post(f"/v1/invitations/{invited.json()['id']}/accept", headers=member.h())
    assert accepted.status_code == 200, accepted.text

    switched = await browser_client.post("/v1/auth/switch", json={"org": org}, headers=member.h())
    assert switched.status_code == 200 and "set-cookie" not in switched.headers
    reload = await member.refresh()
    assert reload.json()["context"]["org"]["slug"] == org and reload.json()["context"]["role"] == "admin"

    removed = await browser_client.delete(
        f"/v1/orgs/{org}/members/{member.body['person']['slug']}", headers=owner.h()
    )
    assert removed.status_code == 204
    after = await member.refresh()
    assert after.status_code == 200 and after.json()["context"]["kind"] == "personal"
    back = await browser_client.post("/v1/auth/switch", json={"org": org}, headers=member.h())
    assert back.status_code == 403 and back.json()["code"] == "not_a_member"


async def test_sign_out_revokes_the_session_and_clears_the_cookies(browser_client: httpx.AsyncClient) -> None:
    web = Browser(browser_client)
    await web.signup()
    stale = dict(web.jar)
    r = await browser_client.post("/v1/auth/logout", headers={**web.h(), **web.cookie_header()})
    assert r.status_code == 204
    web.take(r)
    assert web.jar == {}
    assert web.last["atlilith_refresh"][0]["path"] == "/v1/auth"
    web.jar = stale
    again = await web.refresh()
    assert again.status_code == 401 and again.json()["code"] == "session_revoked"
    assert (await browser_client.get("/v1/me", headers=web.h())).status_code == 401


async def test_openapi_documents_browser_sessions(browser_client: httpx.AsyncClient) -> None:
    spec = (await browser_client.get("/openapi.json")).json()
    login = spec["components"]["schemas"]["LoginIn"]["properties"]
    assert (
        "refresh_cookie" in login
        and "refresh_cookie" in spec["components"]["schemas"]["SignupIn"]["properties"]
    )
    refresh = spec["paths"]["/v1/auth/refresh"]["post"]
    assert "X-CSRF-Token" in refresh["description"]
    assert any(p["name"] == "X-CSRF-Token" for p in refresh["parameters"])
    assert "csrf_failed" in refresh["responses"]["403"]["description"]
    assert "session_id" not in spec["components"]["schemas"]["AuthOut"]["properties"]
