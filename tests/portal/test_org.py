"""A provider's first day in the portal, as people use it: sign up, create an org, switch to
it, invite a second person (another browser), who accepts; re-role them; remove them, after
which their link to the org says they are not a member."""

from __future__ import annotations

import re
import uuid
from typing import Any

from playwright.async_api import Page, expect

from tests.portal.conftest import api_as, join_as, new_person, open_from_nav, screenshot, sign_up_quickly


async def test_sign_up_create_org_invite_accept_and_change_role(
    page: Page, new_context: Any, live_server: str
) -> None:
    # Sign up through the form.
    owner = new_person("own")
    await page.goto("/signup")
    await screenshot(page, "signup")
    await page.get_by_label("Your name").fill(owner.display_name)
    await page.get_by_label("Handle").fill(owner.slug)
    await page.get_by_label("Email").fill(owner.email)
    await page.get_by_label("Password").fill(owner.password)
    await page.get_by_role("button", name="Create account").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Welcome, {owner.display_name}")
    await expect(page.get_by_text("You are not in any org yet.")).to_be_visible()

    # Create an org from the switcher; the portal switches to it.
    await page.get_by_role("navigation", name="Contexts").get_by_role("link", name="+ New org").click()
    org_slug = f"studio-{uuid.uuid4().hex[:6]}"
    await page.get_by_label("Org name").fill("Studio Test")
    await page.get_by_label("Org handle").fill(org_slug)
    await screenshot(page, "new-org")
    await page.get_by_role("button", name="Create org").click()
    await expect(page).to_have_url(f"{live_server}/o/{org_slug}")
    await expect(page.get_by_role("heading", level=1)).to_have_text("Studio Test")
    contexts = page.get_by_role("navigation", name="Contexts")
    await expect(contexts.get_by_role("link", name="Studio Test")).to_have_attribute("aria-current", "page")

    # Roster: just the owner; the owner cannot be re-roled or removed.
    await open_from_nav(page, "Members")
    await expect(page.get_by_role("row").filter(has_text=owner.slug)).to_be_visible()
    await expect(page.get_by_text("You are the only member.")).to_be_visible()

    # Inviting an unknown handle from the roster fails where it happened, with the API's hint.
    await page.get_by_label("Email or handle to invite").fill("nobody-" + uuid.uuid4().hex[:6])
    await page.get_by_role("button", name="Send invitation").click()
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("Could not send the invitation")
    await expect(alert).to_contain_text("What to do:")

    # A second person, in their own browser context, signs up; the owner invites their handle.
    guest_ctx = await new_context()
    guest_page = await guest_ctx.new_page()
    guest = await sign_up_quickly(guest_page, "guest")
    await (
        page.get_by_role("navigation", name="Pages")
        .get_by_role("link", name="Invitations", exact=True)
        .click()
    )
    await page.get_by_label("Email or handle to invite").fill(guest.slug)
    await page.get_by_role("button", name="Send invitation").click()
    await expect(page.get_by_role("status").filter(has_text="Invitation sent")).to_be_visible()
    await expect(
        page.get_by_role("cell", name=f"{guest.display_name} ({guest.slug})", exact=True)
    ).to_be_visible()
    await screenshot(page, "org-invitations")

    # The guest accepts from "My invitations", and finds the org in their switcher.
    await guest_page.get_by_role("link", name="My invitations").click()
    await expect(guest_page.get_by_text("Studio Test invites you as member")).to_be_visible()
    await screenshot(guest_page, "my-invitations")
    await guest_page.get_by_role("button", name="Accept the invitation to Studio Test").click()
    await expect(guest_page.get_by_role("status").filter(has_text="You joined Studio Test")).to_be_visible()
    await expect(guest_page.get_by_text("No pending invitations.")).to_be_visible()
    await (
        guest_page.get_by_role("navigation", name="Contexts").get_by_role("link", name="Studio Test").click()
    )
    await expect(guest_page.get_by_role("heading", level=1)).to_have_text("Studio Test")
    await expect(guest_page.get_by_text("as member")).to_be_visible()

    # The owner sees them on the roster and makes them an admin.
    await open_from_nav(page, "Members")
    await page.get_by_label(f"Role of {guest.display_name}").select_option("admin")
    await expect(
        page.get_by_role("status").filter(has_text=f"{guest.display_name} is now admin")
    ).to_be_visible()
    await screenshot(page, "members")
    await guest_page.reload()
    await expect(guest_page.get_by_text("as admin")).to_be_visible()

    # The guest (admin) is refused what the API refuses, right where they tried it.
    await guest_page.goto(f"/o/{org_slug}/members")
    await expect(guest_page.get_by_role("button", name=f"Remove {owner.display_name}")).to_have_count(0)
    await guest_page.get_by_label("Email or handle to invite").fill(owner.slug)
    await guest_page.get_by_role("button", name="Send invitation").click()
    refusal = guest_page.get_by_role("alert")
    await expect(refusal).to_contain_text("already a member")
    await expect(refusal).to_contain_text("What to do: nothing to invite them to: change their role instead")

    # Removed, the guest's link to the org says so clearly.
    await page.get_by_role("button", name=f"Remove {guest.display_name}").click()
    await page.get_by_role("button", name=f"Yes, remove {guest.display_name.lower()}").click()
    await expect(page.get_by_role("row").filter(has_text=guest.slug)).to_have_count(0)
    await guest_page.reload()
    await expect(guest_page.get_by_role("heading", level=1)).to_have_text("You are not a member of this org")
    await expect(
        guest_page.get_by_role("navigation", name="Contexts").get_by_role("link", name="Studio Test")
    ).to_have_count(0)
    await screenshot(guest_page, "no-longer-a-member")


async def test_brands_and_transfer(page: Page, live_server: str) -> None:
    await sign_up_quickly(page, "brand")
    org_slug = f"brands-{uuid.uuid4().hex[:6]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": org_slug, "name": "Brand House"})
    await page.goto(f"/o/{org_slug}/brands")
    await expect(page.get_by_text("No brands yet.")).to_be_visible()
    await page.get_by_role("button", name="New brand").click()
    await page.get_by_label("Brand name").fill("Maison")
    await page.get_by_label("Brand handle").fill(f"maison-{uuid.uuid4().hex[:4]}")
    await page.get_by_label("Domains").fill("maison.example")
    await page.get_by_label("Site configuration (JSON)").fill("{not json")
    await page.get_by_role("button", name="Create brand").click()
    await expect(page.get_by_role("alert")).to_contain_text("not valid JSON")
    await page.get_by_label("Site configuration (JSON)").fill('{"tagline": "Fresh bread"}')
    await page.get_by_role("button", name="Create brand").click()
    await expect(page.get_by_role("cell", name="maison.example", exact=True)).to_be_visible()

    await page.get_by_role("button", name="Edit Maison").click()
    await page.get_by_label("Domains").fill("maison.example, www.maison.example")
    await screenshot(page, "brands")
    await page.get_by_role("button", name="Save brand").click()
    await expect(
        page.get_by_role("cell", name="maison.example, www.maison.example", exact=True)
    ).to_be_visible()

    # Personal brands are another context: the org's brand is not there.
    await page.get_by_role("navigation", name="Contexts").get_by_role("link", name="Personal").click()
    await open_from_nav(page, "Brands", f"{live_server}/me/brands")
    await expect(page.get_by_text("No brands yet.")).to_be_visible()

    # Transfer: with nobody else in the org, the page says what to do first.
    await page.goto(f"/o/{org_slug}/settings")
    await expect(page.get_by_text("There is nobody to hand the org to yet.")).to_be_visible()


async def test_ownership_is_offered_and_taken_only_by_its_acceptance(page: Page, new_context: Any) -> None:
    """The owner offers the org; it stays theirs until the member accepts, in their own portal."""
    await sign_up_quickly(page, "boss")
    org_slug = f"heirs-{uuid.uuid4().hex[:6]}"
    await api_as(page, "POST", "/v1/orgs", {"slug": org_slug, "name": "Heir House"})
    heir_page = await (await new_context()).new_page()
    heir = await sign_up_quickly(heir_page, "heir")
    await join_as(page, heir_page, org_slug, heir.slug)
    await page.goto(f"/o/{org_slug}/settings")
    await page.get_by_label("New owner").select_option(heir.slug)
    await screenshot(page, "org-settings")
    await page.get_by_role("button", name="Offer ownership").click()
    await page.get_by_role("button", name="Yes, offer ownership").click()
    await expect(page.get_by_role("status")).to_contain_text(f"Ownership is offered to {heir.display_name}")
    await expect(page.get_by_text("your role: owner")).to_be_visible()  # nothing moved yet

    await heir_page.goto("/me")
    await expect(heir_page.get_by_text("offers you ownership of Heir House")).to_be_visible()
    await heir_page.get_by_role("link", name="Answer in its settings").click()
    await heir_page.get_by_role("button", name="Accept ownership").click()
    await heir_page.get_by_role("button", name="Yes, accept ownership").click()
    await expect(heir_page).to_have_url(re.compile(f"/o/{org_slug}/members$"))
    await heir_page.goto(f"/o/{org_slug}/settings")
    await expect(heir_page.get_by_text("your role: owner")).to_be_visible()

    await page.goto(f"/o/{org_slug}/settings")
    await expect(page.get_by_text(f"Owner: {heir.display_name}")).to_be_visible()
    await expect(page.get_by_text("Only the owner")).to_be_visible()


async def test_removed_while_a_page_is_open_the_next_step_says_so(page: Page, new_context: Any) -> None:
    owner = await sign_up_quickly(page, "boss")
    org = await api_as(
        page, "POST", "/v1/orgs", {"slug": f"gone-{uuid.uuid4().hex[:8]}", "name": "Gone Studio"}
    )
    guest_page = await (await new_context()).new_page()
    guest = await sign_up_quickly(guest_page, "left")
    await join_as(page, guest_page, org["slug"], guest.slug)
    await guest_page.goto(f"/o/{org['slug']}/inbox")
    await expect(guest_page.get_by_role("heading", name="Inbox", level=1)).to_be_visible()

    await api_as(page, "DELETE", f"/v1/orgs/{org['slug']}/members/{guest.slug}")
    # No reload: the guest's next step in the open app meets the removal.
    await open_from_nav(guest_page, "Calendar")
    await expect(guest_page.get_by_role("heading", level=1)).to_have_text("You are not a member of this org")
    await expect(guest_page.get_by_text(org["id"])).to_have_count(0)  # never named by its internal id
    await expect(
        guest_page.get_by_role("navigation", name="Contexts").get_by_role("link", name="Gone Studio")
    ).to_have_count(0)
    assert owner.slug
