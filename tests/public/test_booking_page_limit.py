"""A booking page's own limit (`ATLILITH_RATE_LIMIT_PUBLIC_PER_TARGET`) counts the bookings made
on it, whoever makes them: forms core refuses (a start no page offered, a form with mistakes)
and resent forms of one booking never count, so one visitor cannot close a provider's page; a
page that has taken its bookings answers a person in words, with `Retry-After`."""

from __future__ import annotations

import datetime as dt

import pytest

from tests.public.conftest import Visitor, details, free_starts, is_page, provider


def _form(fields: dict[str, str], start: str, **typed: str) -> dict[str, str]:
    return {**fields, "start_at": start, "tz": "UTC", "name": "Kim", "email": "kim@example.com", **typed}


@pytest.mark.usefixtures("one_window")
async def test_refused_attempts_do_not_close_a_page_and_bookings_made_do(limited: Visitor) -> None:
    async with limited(rate_limit_public_per_target="3/minute") as http:
        _, page = await provider(http)
        starts = await free_starts(http, page)
        fields = await details(http, page, starts[0])
        never_offered = (dt.datetime.fromisoformat(starts[0]) + dt.timedelta(minutes=7)).isoformat()
        for _ in range(10):
            refused = await http.post(page, data=_form(fields, never_offered))
            is_page(refused, 422)
            assert "This time can&#39;t be booked" in refused.text
            mistakes = await http.post(page, data=_form(fields, starts[0], email="", phone="12"))
            is_page(mistakes, 422)

        first = await http.post(page, data=_form(fields, starts[0]))
        assert first.status_code == 303, first.text[:300]
        for _ in range(5):  # the same form resent: the same booking, counted once
            again = await http.post(page, data=_form(fields, starts[0]))
            assert again.status_code == 303 and again.headers["location"] == first.headers["location"]
        for start in starts[1:3]:
            made = await http.post(page, data=_form(await details(http, page, start), start))
            assert made.status_code == 303, made.text[:300]

        full = await http.post(page, data=_form(await details(http, page, starts[3]), starts[3]))
        is_page(full, 429)
        wait = int(full.headers["retry-after"])
        assert 1 <= wait <= 60
        assert "Many bookings were made on this page in a short time" in full.text
        assert "Please try again in about" in full.text
        assert "Retry-After" not in full.text and "RateLimit" not in full.text
