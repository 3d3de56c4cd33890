"""A new provider with no clients and no messages yet does everything in the portal: adds a
client, corrects them, starts a conversation with them and finds it in the inbox."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.portal.conftest import api_as, screenshot, sign_up_quickly

NAME = "Léa <b>Martin</b>"


async def test_a_new_provider_adds_a_client_edits_them_and_starts_a_conversation(page: Page) -> None:
    await sign_up_quickly(page, "newpro")
    await page.goto("/me/clients")
    await expect(page.get_by_text("No clients yet.")).to_be_visible()
    await expect(page.locator("main")).not_to_contain_text("/v1/")

    # Refused: the reasons next to the form and its fields, and what was typed stays.
    await page.get_by_role("button", name="New client").click()
    form = page.get_by_role("form", name="New client")
    await form.get_by_label("Email").fill("not an email")
    await form.get_by_label("Notes").fill("Prefers mornings")
    await form.get_by_role("button", name="Add client").click()
    await expect(form.get_by_role("alert")).to_contain_text("Could not save the client")
    await expect(form.get_by_label("Name")).to_have_attribute("aria-invalid", "true")
    await expect(form.get_by_label("Email")).to_have_value("not an email")
    await expect(form.get_by_label("Notes")).to_have_value("Prefers mornings")

    await form.get_by_label("Name").fill(NAME)
    await form.get_by_label("Email").fill("lea@example.com")
    await form.get_by_role("button", name="Add client").click()
    await expect(page).to_have_url(re.compile(r"/me/clients/[0-9a-f-]{36}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text(NAME)
    await expect(page.locator("main b")).to_have_count(0)
    await expect(page.locator(".client-notes")).to_have_text("Prefers mornings")
    client_id = page.url.rsplit("/", 1)[1]

    # Edit: an emptied field is cleared, a new one saved.
    await page.get_by_role("button", name="Edit client").click()
    edit = page.get_by_role("form", name=f"Edit {NAME}")
    await expect(edit.get_by_label("Email")).to_have_value("lea@example.com")
    await edit.get_by_label("Phone").fill("+33 6 12 34 56 78")
    await edit.get_by_label("Notes").fill("")
    await screenshot(page, "client-edit")
    await edit.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status").filter(has_text=f"Saved {NAME}.")).to_be_visible()
    saved = await api_as(page, "GET", f"/v1/clients/{client_id}")
    assert saved["phone"] and saved["phone"].startswith("+33") and saved["notes"] is None
    await expect(page.locator(".client-notes")).to_have_count(0)

    # Someone else changes the client meanwhile: the save is refused, not written over theirs.
    await page.get_by_role("button", name="Edit client").click()
    await expect(edit.get_by_label("Name")).to_have_value(NAME)  # read when the form opened
    await api_as(page, "PATCH", f"/v1/clients/{client_id}", {"notes": "from an agent"})
    await edit.get_by_label("Name").fill("Léa Martin")
    await edit.get_by_role("button", name="Save changes").click()
    await expect(edit.get_by_role("alert")).to_contain_text("Could not save the client")
    await expect(edit.get_by_label("Name")).to_have_value("Léa Martin")
    assert (await api_as(page, "GET", f"/v1/clients/{client_id}"))["name"] == NAME
    await edit.get_by_role("button", name="Cancel").click()

    # A conversation started from the client's page opens as a thread, listed in the inbox.
    await page.get_by_role("button", name="New conversation").click()
    talk = page.get_by_role("form", name="New conversation")
    await talk.get_by_label("Subject").fill("Welcome")
    await talk.get_by_label("First message (optional)").fill("Hello Léa, glad to have you.")
    await screenshot(page, "client-new-conversation")
    await talk.get_by_role("button", name="Start conversation").click()
    await expect(page).to_have_url(re.compile(r"/me/inbox/[0-9a-f-]{36}$"))
    await expect(page.get_by_role("heading", level=1)).to_have_text("Welcome")
    messages = page.get_by_role("list", name="Messages, oldest first")
    await expect(messages.get_by_text("Hello Léa, glad to have you.")).to_be_visible()
    await page.get_by_role("link", name="← Inbox").click()
    threads = page.get_by_role("list", name="Threads")
    await expect(threads.get_by_role("link", name=f"{NAME} Welcome")).to_be_visible()


async def test_an_empty_inbox_says_how_to_write_first(page: Page) -> None:
    await sign_up_quickly(page, "quiet")
    await page.goto("/me/inbox")
    await expect(page.get_by_text("No threads here.")).to_be_visible()
    await expect(page.locator("main")).not_to_contain_text("/v1/")
    await page.get_by_role("main").get_by_role("link", name="clients").click()
    await expect(page.get_by_role("heading", level=1)).to_have_text("Clients")
