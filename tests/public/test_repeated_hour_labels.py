"""A times page on a fall-back night: the hour the visitor's clock shows twice is two offered
times, and neither their text nor their accessible names are alike."""

from __future__ import annotations

import datetime as dt
import html
import re
from urllib.parse import unquote
from zoneinfo import ZoneInfo

import httpx

from servers.public.zones import clock, clock_labels
from tests.conftest import signup
from tests.core.bookings.helpers import ALL_DAY, make_service, next_fall_back, set_hours

LOS_ANGELES = "America/Los_Angeles"
SLOT = re.compile(r'<a class="slot" href="(?P<url>[^"]+)" aria-label="(?P<name>[^"]+)">(?P<text>[^<]+)</a>')


async def test_the_two_times_the_clock_shows_alike_are_told_apart(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    await set_hours(client, a, time_zone=LOS_ANGELES, weekly=ALL_DAY)
    svc = await make_service(client, a, max_advance_days=730)
    day = next_fall_back(ZoneInfo(LOS_ANGELES))
    page = f"/book/{a.slug}/{svc['id']}"
    shown = await client.get(page, params={"tz": LOS_ANGELES, "from": day.isoformat()})
    assert shown.status_code == 200, shown.text[:300]
    heading = f"{day:%A} {day.day} {day:%B}"
    section = shown.text.split(f">{heading}</h2>")[1].split("</section>")[0]
    slots = [m.groupdict() for m in SLOT.finditer(section)]

    assert [s["text"] for s in slots[:4]] == ["00:00", "01:00 PDT", "01:00 PST", "02:00"]
    assert [html.unescape(s["name"]) for s in slots[1:3]] == [
        f"{heading}, 01:00 PDT",
        f"{heading}, 01:00 PST",
    ]
    assert len({s["text"] for s in slots}) == len({s["name"] for s in slots}) == len(slots) == 25

    # The form for the second says which 01:00 it books.
    second = unquote(html.unescape(slots[2]["url"]))
    assert f"start={day}T01:00:00-08:00" in second
    form = await client.get(html.unescape(slots[2]["url"]))
    assert form.status_code == 200, form.text[:300]
    assert f"{day:%A} {day.day} {day:%B %Y}, 01:00 PST" in form.text
    assert dt.datetime.fromisoformat(f"{day}T01:00:00-08:00") in (
        dt.datetime.fromisoformat(s) for s in re.findall(r'name="start_at" value="([^"]+)"', form.text)
    )


def test_a_zone_that_keeps_its_abbreviation_through_the_change_is_told_apart_by_offset() -> None:
    """Moscow went from UTC+4 to UTC+3 on 26 October 2014 and was "MSK" on both sides."""
    moscow = ZoneInfo("Europe/Moscow")
    first, second = (dt.datetime(2014, 10, 26, 1, tzinfo=moscow, fold=f) for f in (0, 1))
    assert clock_labels([first, second]) == ["01:00 UTC+04:00", "01:00 UTC+03:00"]
    assert (clock(first), clock(second)) == ("01:00 UTC+04:00", "01:00 UTC+03:00")
    assert clock(dt.datetime(2014, 10, 26, 3, tzinfo=moscow)) == "03:00"
