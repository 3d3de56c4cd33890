"""Clients and analytics pages on the demo data `./run dev` seeds: a member of `cocotte` finds a
client, opens their threads and bookings; the analytics page draws a trend and a funnel whose
table views hold exactly the API's numbers."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Page, expect
from sqlalchemy import select

from core import tenancy
from core.context import Principal, PrincipalKind, Role, TenantContext
from core.demo import seed_demo_data
from core.relay import Relay
from core.seed import ORG_SLUG, PERSON_SLUG, seed
from core.tenancy.models import Org, Person
from core.tenancy.schemas import InvitationIn
from core.uow import Database
from tests.conftest import SEED_PASSWORD
from tests.portal.conftest import open_from_nav, screenshot, sign_up_quickly


async def _demo_org_member(db: Database, slug: str) -> None:
    """The demo seeded, and `slug` an admin of cocotte (signed in as itself, not as the seeded owner)."""
    await seed(db, SEED_PASSWORD)
    await seed_demo_data(db)
    async with db.system() as uow:
        owner = (await uow.session.execute(select(Person.id).where(Person.slug == PERSON_SLUG))).scalar_one()
        org_id = (await uow.session.execute(select(Org.id).where(Org.slug == ORG_SLUG))).scalar_one()
        ctx = TenantContext(
            principal=Principal(kind=PrincipalKind.SESSION, person_id=owner),
            person_id=owner,
            person_slug=PERSON_SLUG,
            org_id=org_id,
            org_slug=ORG_SLUG,
            role=Role.OWNER,
        )
        uow.ctx = ctx
        await uow.act_as_service(owner, org_id)
        invited = await tenancy.create_invitation(ctx, uow, InvitationIn(person=slug, role="admin"))
    async with db.system() as uow:  # they join as anyone does: by accepting
        person = (await uow.session.execute(select(Person.id).where(Person.slug == slug))).scalar_one()
        as_them = TenantContext(
            principal=Principal(kind=PrincipalKind.SESSION, person_id=person),
            person_id=person,
            person_slug=slug,
        )
        uow.ctx = as_them
        await uow.act_as_service(person, None)
        await tenancy.accept_invitation(as_them, uow, invited.id)
    await Relay(db).drain()  # what the dev server's relay does: analytics of bookings, messages


async def _api(page: Page, method: str, path: str, body: Any = None, org: str | None = None) -> Any:
    """The REST API as the signed-in person, in `org` (independent of what the page shows)."""
    csrf = next(c["value"] for c in await page.context.cookies() if c["name"] == "atlilith_csrf")
    auth = await page.context.request.post("/v1/auth/refresh", headers={"X-CSRF-Token": csrf})
    assert auth.status == 200, await auth.text()
    headers = {"Authorization": f"Bearer {(await auth.json())['access_token']}"}
    if org:
        headers["X-Atlilith-Org"] = org
    r = await page.context.request.fetch(path, method=method, data=body, headers=headers)
    assert r.ok, f"{method} {path}: {r.status} {await r.text()}"
    return await r.json()


async def test_clients_list_search_and_detail(page: Page, db: Database, live_server: str) -> None:
    person = await sign_up_quickly(page, "cli")
    await _demo_org_member(db, person.slug)

    # Personal context: no clients yet, and the page says what to do.
    await page.goto("/me/clients")
    await expect(page.get_by_text("No clients yet.")).to_be_visible()

    await page.goto(f"/o/{ORG_SLUG}")
    await open_from_nav(page, "Clients", f"{live_server}/o/{ORG_SLUG}/clients")
    table = page.get_by_role("table", name="Clients")
    await expect(table.get_by_role("link", name="Camille Laurent")).to_be_visible()
    await expect(table.get_by_role("link", name="Jules Moreau")).to_be_visible()
    await screenshot(page, "clients")

    await page.get_by_label("Search clients").fill("camille")
    await page.get_by_role("button", name="Search").click()
    await expect(page).to_have_url(f"{live_server}/o/{ORG_SLUG}/clients?q=camille")
    await expect(table.get_by_role("row")).to_have_count(2)  # header + Camille
    await expect(table.get_by_role("link", name="Camille Laurent")).to_be_visible()

    await page.get_by_label("Search clients").fill("nobody-like-this")
    await page.get_by_role("button", name="Search").click()
    await expect(page.get_by_text("No client matches “nobody-like-this”.")).to_be_visible()
    await page.get_by_role("link", name="see all clients").click()
    await expect(table.get_by_role("link", name="Camille Laurent")).to_be_visible()

    # What a client wrote about themselves is shown as text, never as markup.
    odd = "<img src=x onerror=alert(1)> Zed & <b>co</b>"
    await _api(page, "POST", "/v1/clients", {"name": odd}, org=ORG_SLUG)
    await page.get_by_label("Search clients").fill("Zed")
    await page.get_by_role("button", name="Search").click()
    await expect(table.get_by_role("link", name=odd)).to_be_visible()
    await expect(table.locator("img, b")).to_have_count(0)
    await page.get_by_role("link", name="Clear search").click()

    await table.get_by_role("link", name="Camille Laurent").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Camille Laurent")
    client_id = page.url.rsplit("/", 1)[1]
    api_client = await _api(page, "GET", f"/v1/clients/{client_id}", org=ORG_SLUG)
    await expect(page.get_by_text("camille.laurent@example.com")).to_be_visible()
    await expect(page.locator("code", has_text=api_client["polyseme_person_id"])).to_be_visible()
    threads = page.get_by_role("table", name="Conversations")
    await expect(threads.get_by_role("cell", name="Rendez-vous mardi ?")).to_be_visible()
    bookings = await _api(page, "GET", f"/v1/bookings?client_id={client_id}", org=ORG_SLUG)
    assert bookings["items"], "the demo books Camille at least once"
    await expect(page.get_by_role("table", name="Bookings").get_by_role("row")).to_have_count(
        1 + len(bookings["items"])
    )
    await screenshot(page, "client")
    # A conversation opens in the inbox.
    await threads.get_by_role("link", name="Rendez-vous mardi ?").click()
    await expect(page).to_have_url(re.compile(rf"/o/{ORG_SLUG}/inbox/[0-9a-f-]{{36}}$"))

    # Another person sees none of cocotte's clients.
    other = await page.context.browser.new_context(base_url=live_server)  # type: ignore[union-attr]
    try:
        page2 = await other.new_page()
        await sign_up_quickly(page2, "out")
        await page2.goto(f"/me/clients/{client_id}")
        await expect(page2.get_by_role("alert")).to_contain_text("Could not load this client")
    finally:
        await other.close()


async def _table(page: Page, name: str) -> list[list[str]]:
    rows = page.get_by_role("table", name=name).locator("tbody tr")
    return [
        [c.strip() for c in await rows.nth(i).locator("th, td").all_inner_texts()]
        for i in range(await rows.count())
    ]


async def test_analytics_draws_trend_and_funnel_whose_tables_match_the_api(
    page: Page, db: Database, live_server: str
) -> None:
    person = await sign_up_quickly(page, "ana")
    await page.goto("/me/analytics")
    await expect(page.get_by_text("No events in this period.")).to_be_visible()
    await expect(page.get_by_text("Nobody reached the first step in this period.")).to_be_visible()
    await _demo_org_member(db, person.slug)
    await page.goto(f"/o/{ORG_SLUG}")
    async with (
        page.expect_response("**/v1/analytics/trends") as trend_answer,
        page.expect_response("**/v1/analytics/funnel") as funnel_answer,
    ):
        await open_from_nav(page, "Analytics")
    trend = await (await trend_answer.value).json()
    funnel = await (await funnel_answer.value).json()
    tz = await page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone")

    # Charts drawn: one line per series (top 3 channels + other), one bar per funnel step.
    trend_chart = page.get_by_role("img", name="Trend chart", exact=False)
    await expect(trend_chart.locator("polyline")).to_have_count(4)
    assert [s["is_other"] for s in trend["series"]] == [False, False, False, True]
    await expect(page.get_by_role("list", name="Series").get_by_role("listitem")).to_have_count(4)
    funnel_chart = page.get_by_role("img", name="Funnel chart", exact=False)
    await expect(funnel_chart.locator("rect.bar")).to_have_count(4)
    summary = await _api(
        page, "GET", f"/v1/analytics/summary?period=last_30_days&time_zone={tz}", org=ORG_SLUG
    )
    assert summary["bookings"]["confirmed"] > 0 and summary["messages"]["received"] >= 3
    cards = page.get_by_role("list", name="Summary")
    await expect(cards.get_by_role("listitem").filter(has_text="Bookings confirmed")).to_contain_text(
        str(summary["bookings"]["confirmed"])
    )
    members = page.get_by_role("table", name="Per member")
    await expect(members.get_by_role("row", name="Quinn")).to_contain_text(
        str(summary["bookings"]["confirmed"])
    )
    await expect(members.get_by_role("row", name="Cocotte (all members)")).to_be_visible()
    await screenshot(page, "analytics")

    # The same query asked independently gives the same numbers the page received.
    again = await _api(
        page,
        "POST",
        "/v1/analytics/trends",
        {
            "period": "last_30_days",
            "time_zone": tz,
            "events": ["page_view"],
            "interval": "day",
            "breakdown": "channel",
            "breakdown_limit": 3,
        },
        org=ORG_SLUG,
    )
    assert [s["values"] for s in again["series"]] == [s["values"] for s in trend["series"]]
    assert sum(s["total"] for s in trend["series"]) > 300  # a month of demo visits

    # Table views: every bucket and every series, exactly the API's values.
    await page.get_by_role("button", name="Show trend as table").click()
    rows = await _table(page, "Trend table")
    assert len(rows) == len(trend["buckets"])
    assert [[int(c) for c in r[1:]] for r in rows] == [
        list(v) for v in zip(*(s["values"] for s in trend["series"]), strict=True)
    ]
    headers = await page.get_by_role("table", name="Trend table").locator("thead th").all_inner_texts()
    assert headers[1:] == [*(s["untrusted_breakdown_value"] for s in trend["series"][:3]), "Other"]
    await page.get_by_role("button", name="Show funnel as table").click()
    steps = await _table(page, "Funnel table")
    assert [(r[1], int(r[2])) for r in steps] == [(s["event"], s["clients"]) for s in funnel["steps"]]
    assert [r[3] for r in steps] == [f"{s['conversion_from_start'] * 100:.1f}%" for s in funnel["steps"]]
    assert funnel["steps"][0]["clients"] > funnel["steps"][-1]["clients"] > 0
    await screenshot(page, "analytics-tables")

    # The date-range picker: the last 7 days, by week, asks the API for exactly that.
    await page.get_by_label("Period").select_option("last_7_days")
    await page.get_by_label("By", exact=True).select_option("week")
    async with page.expect_request("**/v1/analytics/trends") as asked:
        await page.get_by_role("button", name="Update charts").click()
    body = (await asked.value).post_data_json
    assert body is not None
    assert body["period"] == "last_7_days" and body["interval"] == "week"
    await expect(page).to_have_url(f"{live_server}/o/{ORG_SLUG}/analytics?period=last_7_days&interval=week")
    await expect(page.get_by_role("img", name="Trend chart", exact=False)).to_be_visible()

    # Two events without a breakdown: one series per event, named after it.
    await page.get_by_label("Events").fill("page_view, booking_requested")
    await page.get_by_label("Break down by").fill("")
    await page.get_by_role("button", name="Update charts").click()
    legend = page.get_by_role("list", name="Series").get_by_role("listitem")
    await expect(legend).to_have_count(2)
    await expect(legend.nth(0)).to_contain_text("page_view")
    await expect(legend.nth(1)).to_contain_text("booking_requested")


async def test_clients_load_more_pages_through_the_keyset(page: Page) -> None:
    await sign_up_quickly(page, "many")
    for i in range(27):
        await _api(page, "POST", "/v1/clients", {"name": f"Client {i:02d}", "email": f"c{i}@example.com"})
    await page.goto("/me/clients")
    rows = page.get_by_role("table", name="Clients").locator("tbody tr")
    await expect(rows).to_have_count(25)
    await page.get_by_role("button", name="Load more clients").click()
    await expect(rows).to_have_count(27)
    await expect(page.get_by_role("button", name="Load more clients")).to_have_count(0)
    names = await rows.locator("td:first-child").all_inner_texts()
    assert sorted(names) == [f"Client {i:02d}" for i in range(27)]
