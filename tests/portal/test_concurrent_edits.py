"""Two tabs editing the same service, brand, client, working hours or thread: the form saves
with the ETag of what it shows (If-Match), so the tab that saves second, on the version it
opened before the first save, is refused — nothing of the first save is lost — and keeps what
was typed; loading the current version keeps the typed change on top of the other tab's, and
that save goes through."""

from __future__ import annotations

import re
from typing import Any

from playwright.async_api import Locator, Page, Route, expect

from tests.portal.conftest import api_as, sign_up_quickly


async def _edit_in_two_tabs(page: Page, path: str, name: str) -> tuple[Locator, Page, Locator]:
    """`name`'s edit form open in this tab and in a second tab of the same browser."""
    await page.goto(path)
    await page.get_by_role("button", name=f"Edit {name}").click()
    mine = page.get_by_role("form", name=f"Edit {name}")
    await expect(mine).to_be_visible()
    other = await page.context.new_page()
    await other.goto(path)
    await other.get_by_role("button", name=f"Edit {name}").click()
    theirs = other.get_by_role("form", name=f"Edit {name}")
    await expect(theirs).to_be_visible()
    return mine, other, theirs


async def test_a_service_saved_meanwhile_in_another_tab_is_not_overwritten(page: Page) -> None:
    await sign_up_quickly(page, "svctabs")
    service: dict[str, Any] = await api_as(
        page,
        "POST",
        "/v1/bookings/services",
        {
            "name": "Consultation",
            "duration_minutes": 60,
            "description": "As it was",
            "price": {"amount": "30", "currency": "EUR"},
        },
    )
    mine, other, theirs = await _edit_in_two_tabs(page, "/me/services", "Consultation")

    await theirs.get_by_label("Description").fill("Written in the other tab")
    await theirs.get_by_role("button", name="Save service").click()
    await expect(other.get_by_role("status").filter(has_text="Saved Consultation.")).to_be_visible()

    await mine.get_by_label("Price", exact=True).fill("45")
    await mine.get_by_role("button", name="Save service").click()
    alert = mine.get_by_role("alert")
    await expect(alert).to_contain_text("Could not save the service")
    await expect(alert).to_contain_text("Someone changed this after you opened it")
    await expect(alert).to_contain_text("load the current version")
    await expect(alert).not_to_contain_text("ETag")
    await expect(alert).not_to_contain_text("If-Match")
    await expect(mine.get_by_label("Price", exact=True)).to_have_value("45")  # what was typed stays
    now = await api_as(page, "GET", f"/v1/bookings/services/{service['id']}")
    assert now["description"] == "Written in the other tab"
    assert now["price"] == {"amount": "30.00", "currency": "EUR"}

    await mine.get_by_role("button", name="Load the current service and keep my changes").click()
    await expect(mine.get_by_label("Description")).to_have_value("Written in the other tab")
    await expect(mine.get_by_label("Price", exact=True)).to_have_value("45")
    await mine.get_by_role("button", name="Save service").click()
    await expect(page.get_by_role("status").filter(has_text="Saved Consultation.")).to_be_visible()
    now = await api_as(page, "GET", f"/v1/bookings/services/{service['id']}")
    assert now["description"] == "Written in the other tab"
    assert now["price"] == {"amount": "45.00", "currency": "EUR"}


async def test_a_brand_saved_meanwhile_in_another_tab_is_not_overwritten(page: Page) -> None:
    person = await sign_up_quickly(page, "brandtabs")
    brand: dict[str, Any] = await api_as(
        page,
        "POST",
        "/v1/brands",
        {"name": "Maison", "slug": f"maison-{person.slug[-8:]}", "domains": [], "config": {}},
    )
    domain = f"{person.slug}.example"
    mine, other, theirs = await _edit_in_two_tabs(page, "/me/brands", "Maison")

    await theirs.get_by_label("Site configuration (JSON)").fill('{"tagline": "Fresh bread"}')
    await theirs.get_by_role("button", name="Save brand").click()
    await expect(other.get_by_role("status").filter(has_text="Saved Maison.")).to_be_visible()

    await mine.get_by_label("Domains").fill(domain)
    await mine.get_by_role("button", name="Save brand").click()
    alert = mine.get_by_role("alert")
    await expect(alert).to_contain_text("Could not save the brand")
    await expect(alert).to_contain_text("Someone changed this after you opened it")
    await expect(mine.get_by_label("Domains")).to_have_value(domain)
    now = await api_as(page, "GET", f"/v1/brands/{brand['id']}")
    assert now["config"] == {"tagline": "Fresh bread"} and now["domains"] == []

    await mine.get_by_role("button", name="Load the current brand and keep my changes").click()
    await expect(mine.get_by_label("Site configuration (JSON)")).to_have_value(re.compile("Fresh bread"))
    await mine.get_by_role("button", name="Save brand").click()
    await expect(page.get_by_role("status").filter(has_text="Saved Maison.")).to_be_visible()
    now = await api_as(page, "GET", f"/v1/brands/{brand['id']}")
    assert now["config"] == {"tagline": "Fresh bread"} and now["domains"] == [domain]


async def test_the_hours_stay_conditional_after_a_refusal_until_the_current_ones_are_loaded(
    page: Page,
) -> None:
    """Saving again after a refusal is refused again (it would still overwrite the other tab);
    loading the current hours keeps the day this tab changed and the day the other tab did."""
    await sign_up_quickly(page, "hourtabs")
    await api_as(
        page,
        "PUT",
        "/v1/bookings/availability",
        {"time_zone": "Europe/Paris", "weekly": ["mon-fri 09:00-17:00"]},
    )
    await page.goto("/me/hours")
    await expect(page.get_by_label("Monday hours")).to_have_value("09:00-17:00")
    other = await page.context.new_page()
    await other.goto("/me/hours")
    await other.get_by_label("Tuesday hours").fill("10:00-12:00")
    await other.get_by_role("button", name="Save working hours").click()
    await expect(other.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()

    await page.get_by_label("Monday hours").fill("14:00-18:00")
    for _ in range(2):
        await page.get_by_role("button", name="Save working hours").click()
        await expect(page.get_by_role("alert")).to_contain_text("Could not save the working hours")
        await expect(page.get_by_role("button", name="Save working hours")).to_be_enabled()
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert {w["weekday"]: (w["start"], w["end"]) for w in hours["weekly"]}["mon"] == ("09:00", "17:00")

    await page.get_by_role("button", name="Load the current working hours and keep my changes").click()
    await expect(page.get_by_label("Tuesday hours")).to_have_value("10:00-12:00")
    await expect(page.get_by_label("Monday hours")).to_have_value("14:00-18:00")
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert {w["weekday"]: (w["start"], w["end"]) for w in hours["weekly"]} == {
        "mon": ("14:00", "18:00"),
        "tue": ("10:00", "12:00"),
        "wed": ("09:00", "17:00"),
        "thu": ("09:00", "17:00"),
        "fri": ("09:00", "17:00"),
    }
    # Saved once, the form is at the version it saved: the next save goes through too.
    await page.get_by_label("Wednesday hours").fill("")
    async with page.expect_response(
        lambda r: r.url.endswith("/v1/bookings/availability") and r.request.method == "PUT"
    ) as put:
        await page.get_by_role("button", name="Save working hours").click()
    assert (await put.value).status == 200
    await expect(page.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert "wed" not in {w["weekday"] for w in hours["weekly"]}


async def _refused_twice(page: Page, form: Locator, button: str, path: str) -> None:
    """Saving on the version the form shows is refused (412), and so is saving again: the
    refusal does not turn the next save into one that would overwrite the other change."""
    for _ in range(2):
        async with page.expect_response(
            lambda r: r.url.endswith(path) and r.request.method == "PATCH"
        ) as sent:
            await form.get_by_role("button", name=button).click()
        assert (await sent.value).status == 412
        await expect(form.get_by_role("button", name=button)).to_be_enabled()


async def test_a_client_saved_meanwhile_in_another_tab_is_not_overwritten(page: Page) -> None:
    await sign_up_quickly(page, "clienttabs")
    client: dict[str, Any] = await api_as(page, "POST", "/v1/clients", {"name": "Léa Martin"})
    path = f"/v1/clients/{client['id']}"
    await page.goto(f"/me/clients/{client['id']}")
    await page.get_by_role("button", name="Edit client").click()
    mine = page.get_by_role("form", name="Edit Léa Martin")
    await expect(mine.get_by_label("Name")).to_have_value("Léa Martin")
    other = await page.context.new_page()
    await other.goto(f"/me/clients/{client['id']}")
    await other.get_by_role("button", name="Edit client").click()
    theirs = other.get_by_role("form", name="Edit Léa Martin")
    await theirs.get_by_label("Notes").fill("Prefers mornings")
    await theirs.get_by_role("button", name="Save changes").click()
    await expect(other.get_by_role("status").filter(has_text="Saved Léa Martin.")).to_be_visible()

    await mine.get_by_label("Phone").fill("+33 6 12 34 56 78")
    await _refused_twice(page, mine, "Save changes", path)
    alert = mine.get_by_role("alert")
    await expect(alert).to_contain_text("Someone changed this after you opened it")
    await expect(alert).not_to_contain_text("ETag")
    await expect(mine.get_by_label("Phone")).to_have_value("+33 6 12 34 56 78")
    now = await api_as(page, "GET", path)
    assert now["notes"] == "Prefers mornings" and now["phone"] is None

    await mine.get_by_role("button", name="Load the current client and keep my changes").click()
    await expect(mine.get_by_label("Notes")).to_have_value("Prefers mornings")
    await expect(mine.get_by_label("Phone")).to_have_value("+33 6 12 34 56 78")
    await mine.get_by_role("button", name="Save changes").click()
    await expect(page.get_by_role("status").filter(has_text="Saved Léa Martin.")).to_be_visible()
    now = await api_as(page, "GET", path)
    assert now["notes"] == "Prefers mornings" and now["phone"].startswith("+33")


async def test_a_thread_triaged_meanwhile_in_another_tab_is_not_overwritten(page: Page) -> None:
    """This tab's live updates are cut (a dropped connection), so it still shows the thread as
    it was before the other tab set its status: its triage is refused until it loads it."""
    await sign_up_quickly(page, "threadtabs")
    client = await api_as(page, "POST", "/v1/clients", {"name": "Léa Martin"})
    made = await api_as(
        page,
        "POST",
        "/v1/messaging/threads",
        {"client_id": client["id"], "channel": "portal", "subject": "Welcome"},
    )
    tid = made["thread"]["id"]
    path = f"/v1/messaging/threads/{tid}"

    async def cut(route: Route) -> None:
        await route.abort()

    await page.route(re.compile(r"/v1/events/stream"), cut)
    await page.goto(f"/me/inbox/{tid}")
    await expect(page.get_by_role("combobox", name="Status")).to_have_value("open")
    other = await page.context.new_page()
    await other.goto(f"/me/inbox/{tid}")
    await other.get_by_role("combobox", name="Status").select_option("pending")
    await other.get_by_role("button", name="Set status").click()
    await expect(other.get_by_role("status").filter(has_text="Thread updated.")).to_be_visible()

    labels = page.get_by_role("form", name="Labels")
    await labels.get_by_label("Labels").fill("vip")
    await _refused_twice(page, labels, "Save labels", path)
    await expect(page.get_by_role("alert")).to_contain_text("Someone changed this after you opened it")
    await expect(labels.get_by_label("Labels")).to_have_value("vip")
    now = (await api_as(page, "GET", path))["thread"]
    assert now["status"] == "pending" and now["labels"] == []

    await page.get_by_role("button", name="Load the current thread and keep my changes").click()
    await expect(page.get_by_role("combobox", name="Status")).to_have_value("pending")
    await expect(labels.get_by_label("Labels")).to_have_value("vip")
    await labels.get_by_role("button", name="Save labels").click()
    await expect(page.get_by_role("status").filter(has_text="Thread updated.")).to_be_visible()
    now = (await api_as(page, "GET", path))["thread"]
    assert now["status"] == "pending" and now["labels"] == ["vip"]
