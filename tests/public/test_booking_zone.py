"""A booking form sent without a zone (no script ran to fill it in) stores no client zone:
the reminder then names the provider's zone instead of "UTC", which nobody chose. The pages
still show the time, in UTC, saying so."""

from __future__ import annotations

from tests.public.conftest import Visitor, details, free_starts, provider_account


async def test_a_form_sent_without_a_zone_stores_none_and_still_shows_the_time(limited: Visitor) -> None:
    async with limited() as http:
        a, times = await provider_account(http)
        start = (await free_starts(http, times))[0]
        fields = await details(http, times, start)
        form = {**fields, "start_at": start, "tz": "", "name": "Kim", "email": "kim@example.com"}
        booked = await http.post(times, data=form)
        assert booked.status_code == 303, booked.text[:300]

        [made] = (await http.get("/v1/bookings?limit=10", headers=a.h())).json()["items"]
        one = await http.get(f"/v1/bookings/{made['id']}", headers=a.h())
        assert one.status_code == 200, one.text
        assert one.json()["client_time_zone"] is None

        shown = await http.get(booked.headers["location"])
        assert shown.status_code == 200, shown.text[:300]
        assert "You are booked" in shown.text
        assert f"{start[11:16]} (UTC)" in shown.text
