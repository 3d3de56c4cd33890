"""A booking is made, then counting it against its page's limit fails (the limiter's store,
Redis say, is away): the visitor still reaches their booking, never an error page that hides
a booking they made."""

from __future__ import annotations

import pytest

from core.ratelimit import RateLimits
from tests.public.conftest import Visitor, details, free_starts, provider_account


async def test_a_failing_limiter_store_after_booking_still_leads_to_the_booking(
    limited: Visitor, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def store_away(self: RateLimits, target: str, booking: str) -> None:
        raise ConnectionError("limiter storage unreachable")

    monkeypatch.setattr(RateLimits, "count_booking", store_away)
    async with limited() as http:
        a, times = await provider_account(http)
        start = (await free_starts(http, times))[0]
        form = {**await details(http, times, start), "start_at": start, "tz": "UTC", "name": "Kim"}
        booked = await http.post(times, data={**form, "email": "kim@example.com"})
        assert booked.status_code == 303, booked.text[:300]
        assert booked.headers["location"].startswith("/manage/")
        shown = await http.get(booked.headers["location"])
        assert shown.status_code == 200 and "You are booked" in shown.text
        assert len((await http.get("/v1/bookings?limit=10", headers=a.h())).json()["items"]) == 1
