"""The Components page: find a component in the registry, install it, read its skill, uninstall
it; a member of an org sees the API's refusal with its hint; another person's context is apart."""

from __future__ import annotations

import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.portal.conftest import api_as, join_as, open_from_nav, screenshot, sign_up_quickly


async def test_search_install_read_the_skill_and_uninstall(
    page: Page, new_context: Any, live_server: str
) -> None:
    await sign_up_quickly(page, "comp")
    await open_from_nav(page, "Components", f"{live_server}/me/components")
    await expect(page.get_by_text("Nothing is installed here yet.")).to_be_visible()

    await page.get_by_role("searchbox", name="Search the registry").fill("book appointments")
    await page.get_by_role("button", name="Search").click()
    await page.get_by_role("button", name="Install Bookings").click()
    await expect(page.get_by_role("status").filter(has_text="Bookings is installed")).to_be_visible()
    installed = page.get_by_role("list", name="Installed here")
    await expect(installed.get_by_role("listitem").filter(has_text="Bookings")).to_be_visible()

    await installed.get_by_role("button", name="Show the skill of Bookings").click()
    skill = installed.get_by_label("Skill of Bookings")
    await expect(skill).to_contain_text("name: bookings")
    await screenshot(page, "components")

    # Another person's personal context has none of it.
    other = await new_context()
    page2 = await other.new_page()
    await sign_up_quickly(page2, "compother")
    await page2.goto("/me/components")
    await expect(page2.get_by_text("Nothing is installed here yet.")).to_be_visible()

    await installed.get_by_role("button", name="Uninstall Bookings").click()
    await installed.get_by_role("button", name="Yes, uninstall Bookings").click()
    await expect(page.get_by_text("Nothing is installed here yet.")).to_be_visible()
    assert (await api_as(page, "GET", "/v1/installations"))["items"] == []


async def test_a_member_sees_the_refusal_and_its_hint(page: Page, new_context: Any) -> None:
    owner = await sign_up_quickly(page, "owner")
    slug = f"comp-{uuid.uuid4().hex[:8]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": slug, "name": "Comp Org"})
    other = await new_context()
    page2 = await other.new_page()
    member = await sign_up_quickly(page2, "member")
    await join_as(page, page2, slug, member.slug)
    assert owner.slug != member.slug

    await page2.goto(f"/o/{slug}/components")
    await expect(page2.get_by_text("its owner or an admin installs and uninstalls them")).to_be_visible()
    await page2.get_by_role("button", name="Search").click()
    install = page2.get_by_role("button", name="Install Messaging")
    await install.click()
    # The refusal is shown in the component's own card, with the API's hint.
    card = page2.get_by_role("list", name="Find components").get_by_role("listitem").filter(has=install)
    alert = card.get_by_role("alert")
    await expect(alert).to_contain_text("Messaging was not installed")
    await expect(alert).to_contain_text("What to do:")
    await screenshot(page2, "components-refused")
