"""Revenue in several currencies is never added up: the summary card lists each currency and
compares each with its own previous figure (the old card summed 60 EUR and 10,000 JPY as
10,060 and compared that with last period's euros)."""

from __future__ import annotations

import json
import uuid

from playwright.async_api import Page, expect

from core.analytics.mapping import BOOKING_CONFIRMED
from core.uow import Database
from tests.portal.conftest import sign_up_quickly
from tests.support.sql import system_sql


async def test_revenue_is_compared_per_currency(page: Page, db: Database) -> None:
    person = await sign_up_quickly(page, "revenue")
    person_id = (
        await system_sql(db, "SELECT id FROM platform.persons WHERE slug = :s", {"s": person.slug})
    ).scalar_one()
    for days_ago, amount, currency in ((5, 60, "EUR"), (6, 10000, "JPY"), (40, 50, "EUR")):
        await system_sql(
            db,
            "INSERT INTO analytics.events (id, ts, name, source, properties, person_id)"
            " VALUES (:id, now() - make_interval(days => :d), :n, 'test', CAST(:p AS jsonb), :person)",
            {
                "id": uuid.uuid4(),
                "d": days_ago,
                "n": BOOKING_CONFIRMED,
                "p": json.dumps({"amount": amount, "currency": currency}),
                "person": person_id,
            },
        )
    await page.goto("/me/analytics")
    card = page.get_by_role("list", name="Summary").get_by_role("listitem").filter(has_text="Revenue booked")
    await expect(card).to_contain_text("60.00 EUR + 10,000 JPY")
    await expect(card).to_contain_text("EUR: +20% vs previous period (50); JPY: new this period")
