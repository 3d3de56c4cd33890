"""A name the booking form refuses (a text-direction control came with a pasted name, or the name
is only invisible characters) is said to the visitor in plain words beside the name field, never
as core's code points and positions."""

from __future__ import annotations

import pytest

from tests.public.conftest import Visitor, details, free_starts, is_page, provider

SAID = {
    "\u202eKim": "This name has an invisible character that changes the text direction; please retype it.",
    "Kim \u2068Lee": "This name has an invisible character that changes the text direction; please retype it.",
    "\u200b\u200d": "This name shows no letters, only invisible characters; please type it in letters or digits.",
}


@pytest.mark.usefixtures("one_window")
async def test_a_refused_name_is_said_in_plain_words(limited: Visitor) -> None:
    async with limited() as http:
        _, page = await provider(http)
        [start, *_] = await free_starts(http, page)
        fields = await details(http, page, start)
        for name, words in SAID.items():
            form = {**fields, "start_at": start, "tz": "UTC", "name": name, "email": "kim@example.com"}
            refused = await http.post(page, data=form)
            is_page(refused, 422)
            assert words in refused.text, (name, refused.text)
            assert "U+" not in refused.text and "position" not in refused.text, name
        # A name wrapped in an isolate, as apps copy it, books.
        wrapped = {
            **fields,
            "start_at": start,
            "tz": "UTC",
            "name": "\u2068Kim\u2069",
            "email": "kim@example.com",
        }
        made = await http.post(page, data=wrapped)
        assert made.status_code == 303, made.text[:300]
