"""The hours editor says what is wrong where it is wrong: the API's words for a bad range land
on that day's field (and a bad override in its row), the other days stay clean, nothing is
saved, and after fixing them the next problem (an overlap) lands on its own day too."""

from __future__ import annotations

import re

from playwright.async_api import Page, expect

from tests.portal.conftest import api_as, sign_up_quickly


async def test_each_wrong_day_is_named_on_its_own_field(page: Page) -> None:
    await sign_up_quickly(page, "hrserr")
    await page.goto("/me/hours")
    await page.get_by_label("Time zone").fill("Europe/Paris")
    await page.get_by_label("Monday hours").fill("09:00-12:00")
    await page.get_by_label("Wednesday hours").fill("17:00-09:00")
    await page.get_by_label("Thursday hours").fill("09:00-12:00, 9-17")
    await page.get_by_label("Friday hours").fill("09:00-12:00, 11:00-13:00")
    await page.get_by_label("Override date").fill("2026-12-27")
    await page.get_by_label("Hours that day").fill("25:00-26:00")
    await page.get_by_role("button", name="Add override").click()
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("alert")).to_contain_text("Could not save the working hours")

    wednesday, thursday = page.get_by_label("Wednesday hours"), page.get_by_label("Thursday hours")
    await expect(wednesday).to_have_attribute("aria-invalid", "true")
    await expect(wednesday).to_have_accessible_description(
        re.compile("^end must be after start on the same day$")
    )
    await expect(thursday).to_have_attribute("aria-invalid", "true")
    await expect(thursday).to_have_accessible_description(re.compile(r"a time as HH:MM \(00:00-24:00\)"))
    for clean in ("Monday hours", "Tuesday hours", "Friday hours"):
        await expect(page.get_by_label(clean)).not_to_have_attribute("aria-invalid", "true")
    row = page.get_by_role("row").filter(has_text="2026-12-27")
    await expect(row).to_contain_text("a time as HH:MM (00:00-24:00)")
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert hours["configured"] is False and hours["weekly"] == [] and hours["overrides"] == []

    # Fixed, the overlap left on Friday is named on Friday.
    await wednesday.fill("10:00-17:00")
    await thursday.fill("09:00-17:00")
    await page.get_by_role("button", name="Remove override 2026-12-27").click()
    await page.get_by_role("button", name="Save working hours").click()
    friday = page.get_by_label("Friday hours")
    await expect(friday).to_have_attribute("aria-invalid", "true")
    await expect(friday).to_have_accessible_description(re.compile("09:00-12:00 overlaps 11:00-13:00"))
    await expect(wednesday).not_to_have_attribute("aria-invalid", "true")
    await friday.fill("09:00-13:00")
    await page.get_by_role("button", name="Save working hours").click()
    await expect(page.get_by_role("status").filter(has_text="Working hours saved.")).to_be_visible()
    hours = await api_as(page, "GET", "/v1/bookings/availability")
    assert sorted((w["weekday"], w["start"], w["end"]) for w in hours["weekly"]) == [
        ("fri", "09:00", "13:00"), ("mon", "09:00", "12:00"), ("thu", "09:00", "17:00"), ("wed", "10:00", "17:00"),
    ]  # fmt: skip
