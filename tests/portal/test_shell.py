"""The portal's shell: served with a strict CSP, sign-in redirect with ?next=, context in the URL."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
from playwright.async_api import Page, expect

from tests.portal.conftest import api_as, new_person, screenshot, sign_up_over_api, sign_up_quickly


async def test_shell_and_assets_carry_a_strict_csp(live_server: str) -> None:
    async with httpx.AsyncClient(base_url=live_server) as c:
        for path in ("/", "/signin", "/me/anything", "/o/cocotte/members", "/assets/app.js"):
            r = await c.get(path)
            assert r.status_code == 200, path
            assert "script-src 'self';" in r.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
            assert r.headers["x-content-type-options"] == "nosniff"
        assert (await c.get("/assets/app.js")).headers["content-type"].startswith("text/javascript")
        assert (await c.get("/v1/me")).status_code == 401  # the API is not shadowed
        assert (await c.get("/openapi.json")).status_code == 200


async def test_sign_in_redirects_back_to_next(page: Page, live_server: str) -> None:
    person = new_person("next")
    await sign_up_over_api(live_server, person)
    await page.goto("/me")
    await expect(page).to_have_url(f"{live_server}/signin?next=%2Fme")
    await page.get_by_label("Email or handle").fill(person.slug)
    await page.get_by_label("Password").fill("wrong-password")
    await page.get_by_role("button", name="Sign in").click()
    await expect(page.get_by_role("alert")).to_contain_text("wrong")
    await screenshot(page, "signin")
    await page.get_by_label("Password").fill(person.password)
    await page.get_by_label("Password").press("Enter")  # the keyboard is enough
    await expect(page).to_have_url(f"{live_server}/me")
    await expect(page.get_by_role("heading", level=1)).to_contain_text(person.display_name)

    # Signing out ends the session: a reload does not bring it back.
    await page.get_by_role("button", name="Sign out").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Sign in to Atlilith")
    assert not [c for c in await page.context.cookies() if c["name"].startswith("atlilith_")]
    await page.goto("/me")
    await expect(page).to_have_url(f"{live_server}/signin?next=%2Fme")


async def test_context_in_the_url_survives_a_reload(page: Page, live_server: str) -> None:
    await sign_up_quickly(page, "ctx")
    org: dict[str, Any] = await api_as(
        page,
        "POST",
        "/v1/orgs",
        {"slug": f"reload-{uuid.uuid4().hex[:6]}", "name": "Reload Org"},
    )
    await page.goto(f"/o/{org['slug']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Reload Org")
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Reload Org")
    await expect(
        page.get_by_role("navigation", name="Contexts").get_by_role("link", name="Reload Org")
    ).to_have_attribute("aria-current", "page")
    await page.get_by_role("link", name="Personal").click()
    await expect(page).to_have_url(f"{live_server}/me")
    await page.reload()
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Welcome")
    await screenshot(page, "dashboard")


async def test_a_refused_form_speaks_to_the_person_not_the_developer(page: Page) -> None:
    person = new_person("words")
    await page.goto("/signup")
    await page.get_by_label("Your name").fill("   ")  # passes `required`, stripped to nothing
    await page.get_by_label("Handle").fill(person.slug)
    await page.get_by_label("Email").fill(person.email)
    await page.get_by_label("Password").fill("long-enough-password")
    await page.get_by_role("button", name="Create account").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("What to do: correct what is listed below, then try again")
    await expect(alert).to_contain_text("display name: must not be empty")
    for developer_text in ("`", "errors", "invalid input", "after validation", "display_name"):
        await expect(alert).not_to_contain_text(developer_text)
    await expect(page.get_by_label("Your name")).to_have_accessible_description("must not be empty")
    # A handle the API refuses is named as the form labels it, not by the API's `slug`.
    await page.get_by_label("Your name").fill("Words")
    await page.get_by_label("Handle").fill("admin")
    await page.get_by_role("button", name="Create account").click()
    await expect(alert).to_contain_text("handle: 'admin' is reserved")
    await expect(alert).not_to_contain_text("slug")


async def test_a_mistyped_or_foreign_id_is_not_found_not_a_validation_error(page: Page) -> None:
    await sign_up_quickly(page, "badid")
    for path in ("/me/calendar/bookings/xyz", "/me/inbox/xyz", "/me/jobs/12", "/me/clients/not-an-id"):
        await page.goto(path)
        await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
        await expect(page.get_by_text("Validation failed")).to_have_count(0)
    # Well-formed but no client of this context: said so, with nothing listed under it and no
    # request to make (the API's hint names one).
    await page.goto(f"/me/clients/{uuid.uuid4()}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Client not found")
    await expect(page.get_by_role("alert")).to_be_visible()
    await expect(page.get_by_role("alert")).not_to_contain_text("/v1/")
    await expect(page.get_by_role("heading", name="Conversations")).to_have_count(0)


async def test_a_date_that_does_not_exist_is_not_rolled_over(page: Page) -> None:
    await sign_up_quickly(page, "baddate")
    await page.goto("/me/calendar?view=day&date=2026-13-45")  # Date() would read 2027-02-14
    await expect(page.get_by_role("button", name="Today")).to_be_visible()
    await expect(page.get_by_text("February 14")).to_have_count(0)
    await expect(page.get_by_role("alert")).to_have_count(0)


async def test_a_browser_on_a_path_nobody_serves_gets_a_page(page: Page, live_server: str) -> None:
    for signed_in in (False, True):  # signing in would not make it a page: nobody is asked to
        if signed_in:
            await sign_up_quickly(page, "nopage")
        for path in ("/inbox", "/calendar", "/manage", "/o"):
            answer = await page.goto(path)
            assert answer is not None and answer.status == 404
            assert answer.headers["content-type"].startswith("text/html")
            await expect(page.get_by_role("heading", level=1)).to_have_text("Page not found")
            assert "/signin" not in page.url
    # Under a client's page, the clients' own "not found", never the providers' portal.
    answer = await page.goto("/manage/some-token/oops")
    assert answer is not None and answer.status == 404
    await expect(page.get_by_role("heading", level=1)).to_have_text("Nothing here")
    # An API client (no text/html asked) still gets the problem document.
    async with httpx.AsyncClient(base_url=live_server) as http:
        api = await http.get("/inbox", headers={"accept": "application/json"})
        assert api.status_code == 404 and api.json()["code"] == "not_found"
