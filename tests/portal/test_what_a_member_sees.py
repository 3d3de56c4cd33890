"""A member (neither owner nor admin) of an org is shown what they may do: the org's services,
brands and name to read with a short notice of who changes them, no control that would only be
refused, and no request for what a member may not read (the org's sent invitations)."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, Response, expect

from tests.portal.conftest import api_as, join_as, sign_up_quickly


async def test_a_member_reads_services_brands_and_settings_without_admin_controls(
    page: Page, new_context: Any
) -> None:
    await sign_up_quickly(page, "boss")
    org = f"crew-{uuid.uuid4().hex[:8]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": org, "name": "Crew Studio"})
    member_page = await (await new_context()).new_page()
    member = await sign_up_quickly(member_page, "crew")
    await join_as(page, member_page, org, member.slug)
    await page.goto(f"/o/{org}/services")
    await page.get_by_role("button", name="New service").click()
    await page.get_by_label("Service name").fill("Consultation")
    await page.get_by_role("button", name="Save service").click()
    await expect(page.get_by_role("button", name="Edit Consultation")).to_be_visible()
    await page.goto(f"/o/{org}/brands")
    await page.get_by_role("button", name="New brand").click()
    await page.get_by_label("Brand name").fill("Crew")
    await page.get_by_label("Brand handle").fill(f"crew-{uuid.uuid4().hex[:6]}")
    await page.get_by_role("button", name="Create brand").click()
    await expect(page.get_by_role("button", name="Edit Crew")).to_be_visible()

    refused: list[str] = []

    def note(response: Response) -> None:
        if response.status == 403:
            refused.append(response.url)

    member_page.on("response", note)

    await member_page.goto(f"/o/{org}/services")
    await expect(member_page.get_by_role("cell", name="Consultation", exact=True)).to_be_visible()
    await expect(member_page.get_by_text("its owner or an admin creates and changes them")).to_be_visible()
    await expect(member_page.get_by_role("button", name="New service")).to_have_count(0)
    await expect(member_page.get_by_role("button", name="Edit Consultation")).to_have_count(0)

    await member_page.goto(f"/o/{org}/brands")
    await expect(member_page.get_by_text("Crew", exact=True)).to_be_visible()
    await expect(member_page.get_by_text("its owner or an admin creates and changes them")).to_be_visible()
    await expect(member_page.get_by_role("button", name="New brand")).to_have_count(0)
    await expect(member_page.get_by_role("button", name="Edit Crew")).to_have_count(0)

    await member_page.goto(f"/o/{org}/settings")
    await expect(member_page.get_by_text("its owner or an admin renames it")).to_be_visible()
    await expect(member_page.get_by_role("textbox", name="Org name")).to_have_count(0)
    await expect(member_page.get_by_role("button", name="Save name")).to_have_count(0)

    await member_page.goto(f"/o/{org}/invitations")
    await expect(member_page.get_by_text("its owner and admins send invitations")).to_be_visible()
    await expect(member_page.get_by_role("link", name="My invitations").first).to_be_visible()
    await expect(member_page.get_by_role("alert")).to_have_count(0)
    await expect(member_page.get_by_role("button", name="Send invitation")).to_have_count(0)
    assert refused == []
