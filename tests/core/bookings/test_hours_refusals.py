"""Hours the API cannot take are refused naming the field and the day, and nothing is written:
an overlap names `weekly` (not the body), a date given both "off" and hours is refused rather
than one line silently winning, and a bad override line is quoted alone."""

from __future__ import annotations

import httpx

from tests.conftest import signup


async def test_hours_refusals_name_the_field_and_the_day(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    cases = [
        (["mon 09:00-12:00", "mon 11:00-13:00"], [], "weekly", "mon: 09:00-12:00 overlaps 11:00-13:00"),
        ([], ["2026-12-24 10:00-12:00", "2026-12-24 off"], "overrides", "2026-12-24: both off and open; give the date one line"),
        ([], ["2026-12-24 off", "2026-12-24 10:00-12:00"], "overrides", "2026-12-24: both off and open; give the date one line"),
        ([], ["2026-12-26 off", "2026-12-27 25:00-26:00"], "overrides", "'2026-12-27 25:00-26:00': a time as HH:MM (00:00-24:00)"),
        ([{"weekday": "tue", "start": "", "end": "17:00"}], [], "weekly.0.start", "a time as HH:MM (00:00-24:00)"),
    ]  # fmt: skip
    for weekly, overrides, field, message in cases:
        r = await client.put(
            "/v1/bookings/availability",
            json={"time_zone": "Europe/Paris", "weekly": weekly, "overrides": overrides},
            headers=a.h(),
        )
        assert r.status_code == 422, r.text
        assert [(e["field"], e["message"]) for e in r.json()["errors"]] == [(field, message)]
    kept = (await client.get("/v1/bookings/availability", headers=a.h())).json()
    assert kept["configured"] is False and kept["overrides"] == []
    # The same "off" twice is one day off, not a contradiction; a date out of range is named.
    r = await client.put(
        "/v1/bookings/availability",
        json={
            "time_zone": "Europe/Paris",
            "overrides": ["2026-12-24 off", "2026-12-24 off", "2999-01-01 off"],
        },
        headers=a.h(),
    )
    assert r.status_code == 422 and r.json()["errors"][0]["message"].startswith("2999-01-01: "), r.text
    # Two lines of one date with hours still merge: that is one day with two ranges.
    lines = ["2026-12-24 10:00-12:00", "2026-12-24 14:00-16:00", "2026-12-25 off", "2026-12-25 off"]
    r = await client.put(
        "/v1/bookings/availability", json={"time_zone": "Europe/Paris", "overrides": lines}, headers=a.h()
    )
    assert r.status_code == 200, r.text
    two = [{"start": "10:00", "end": "12:00"}, {"start": "14:00", "end": "16:00"}]
    assert r.json()["overrides"] == [
        {"date": "2026-12-24", "intervals": two},
        {"date": "2026-12-25", "intervals": []},
    ]
