"""The Credits and jobs page: balance, what running jobs hold, the ledger and the jobs with
status, cost and trace id; one job in detail; another person sees none of it."""

from __future__ import annotations

import asyncio
import re
import uuid
from typing import Any

import httpx
from playwright.async_api import Page, Route, expect

from core.uow import Database
from tests.portal.conftest import (
    api_as,
    new_person,
    open_from_nav,
    screenshot,
    sign_up_over_api,
    sign_up_quickly,
)
from tests.support.sql import system_sql


async def _grant(db: Database, live_server: str, person: str, credits: int, times: int = 1) -> None:
    """Credits come from a platform admin's grant: make one and grant over REST."""
    admin = new_person("admin")
    token = await sign_up_over_api(live_server, admin)
    await system_sql(
        db, "UPDATE platform.persons SET is_platform_admin = true WHERE slug = :s", {"s": admin.slug}
    )
    async with httpx.AsyncClient(base_url=live_server) as c:
        for _ in range(times):
            g = await c.post(
                "/v1/admin/credits/grants",
                json={"person": person, "credits": credits, "memo": "welcome credits"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert g.status_code == 201, g.text


async def test_balance_holds_ledger_jobs_and_a_job_in_detail(
    page: Page, new_context: Any, db: Database, live_server: str
) -> None:
    person = await sign_up_quickly(page, "credits")
    await _grant(db, live_server, person.slug, 50)
    await api_as(page, "POST", "/v1/installations", {"component": "identity"})
    # One job that ran at once (charged), one queued (its price held: no relay runs it here).
    done = await api_as(page, "POST", "/v1/identity/resolve-person", {"email": "ada@example.com"})
    queued = await api_as(
        page, "POST", "/v1/run/identity/resolve-company", {"input": {"domain": "example.com"}}
    )
    assert done and queued["job_id"]

    await open_from_nav(page, "Credits", f"{live_server}/me/credits")
    await expect(page.get_by_test_id("balance")).to_have_text("49")
    await expect(page.get_by_test_id("held")).to_have_text("1")
    holds = page.get_by_role("table", name="Open holds")
    await expect(holds.get_by_role("row")).to_have_count(2)
    jobs = page.get_by_role("table", name="Jobs")
    await expect(jobs.get_by_role("row")).to_have_count(3)
    await expect(jobs).to_contain_text("succeeded")
    await expect(jobs).to_contain_text("queued")
    await expect(jobs).to_contain_text(queued["trace_id"])
    ledger = page.get_by_role("table", name="Ledger")
    await expect(ledger).to_contain_text("welcome credits")
    await expect(ledger).to_contain_text("capture")
    await screenshot(page, "credits")

    # Filter, then open the queued job.
    await page.get_by_label("Status").select_option("queued")
    await expect(jobs.get_by_role("row")).to_have_count(2)
    await jobs.get_by_role("link").first.click()
    await expect(page).to_have_url(f"{live_server}/me/jobs/{queued['job_id']}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Job identity/resolve-company")
    await expect(page.get_by_text(queued["job_id"]).first).to_be_visible()
    await expect(page.get_by_label("Input")).to_contain_text("example.com")
    await expect(page.get_by_role("table", name="Ledger entries of this job")).to_contain_text("hold")
    await screenshot(page, "job")
    await page.get_by_role("button", name="Cancel this job").click()
    await page.get_by_role("button", name="Yes, cancel it").click()
    await expect(page.get_by_text("cancelled").first).to_be_visible()

    # Another person: nothing of it, and the job's link finds nothing.
    other = await new_context()
    page2 = await other.new_page()
    await sign_up_quickly(page2, "nocredits")
    await page2.goto("/me/credits")
    await expect(page2.get_by_test_id("balance")).to_have_text("0")
    await expect(page2.get_by_text("No job has run here yet.")).to_be_visible()
    await expect(page2.get_by_text("The ledger is empty.")).to_be_visible()
    await page2.goto(f"/me/jobs/{queued['job_id']}")
    await expect(page2.get_by_role("heading", name="Job not found")).to_be_visible()
    await expect(page2.get_by_role("alert")).to_be_visible()


async def test_an_orgs_credits_are_its_own(page: Page) -> None:
    await sign_up_quickly(page, "orgcredits")
    slug = f"cr-{uuid.uuid4().hex[:8]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": slug, "name": "Credit Org"})
    await page.goto(f"/o/{slug}/credits")
    await expect(page.get_by_text("This is Credit Org")).to_be_visible()
    await expect(page.get_by_test_id("balance")).to_have_text("0")
    await expect(page.get_by_text("No credits yet.")).to_be_visible()


async def test_the_ledger_loads_more_until_it_has_all(page: Page, db: Database, live_server: str) -> None:
    person = await sign_up_quickly(page, "ledger")
    await _grant(db, live_server, person.slug, 2, times=23)
    await page.goto("/me/credits")
    await expect(page.get_by_test_id("balance")).to_have_text("46")
    rows = page.get_by_role("table", name="Ledger").get_by_role("row")
    await expect(rows).to_have_count(21)  # the header and a first page of 20
    await page.get_by_role("button", name="Load more ledger entries").click()
    await expect(rows).to_have_count(24)
    await expect(page.get_by_role("button", name="Load more ledger entries")).to_have_count(0)


async def test_a_late_page_of_the_old_filter_is_not_shown_under_the_new_one(
    page: Page, db: Database, live_server: str
) -> None:
    """ "Load more" asked, then the filter changed before its answer came: that answer belongs
    to the list before and is dropped, never appended to the filtered one."""
    person = await sign_up_quickly(page, "latepage")
    await _grant(db, live_server, person.slug, 50)
    await api_as(page, "POST", "/v1/installations", {"component": "identity"})
    await api_as(page, "POST", "/v1/identity/resolve-person", {"email": "ada@example.com"})  # succeeded
    for i in range(21):  # queued: no relay runs them here
        await api_as(page, "POST", "/v1/run/identity/resolve-company", {"input": {"domain": f"e{i}.com"}})
    released = asyncio.Event()

    async def late(route: Route) -> None:
        await released.wait()
        await route.continue_()

    await page.route(re.compile(r"/v1/jobs\?.*cursor="), late)
    await page.goto("/me/credits")
    jobs = page.get_by_role("table", name="Jobs")
    await expect(jobs.get_by_role("row")).to_have_count(21)  # the header and a first page of 20
    await page.get_by_role("button", name="Load more jobs").click()
    await page.get_by_label("Status").select_option("succeeded")
    await expect(jobs.get_by_role("row")).to_have_count(2)
    async with page.expect_response(re.compile(r"/v1/jobs\?.*cursor=")):
        released.set()
    await page.wait_for_timeout(300)  # time for a wrongly kept answer to render
    await expect(jobs.get_by_role("row")).to_have_count(2)
    await expect(jobs).not_to_contain_text("queued")
