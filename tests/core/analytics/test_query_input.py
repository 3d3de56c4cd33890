"""What a query may ask, refused as a clear 422 on every route rather than half-answered: a
period with start/end, filters that match nothing by construction, names that are no zone."""

from __future__ import annotations

import datetime as dt
from typing import Any

import httpx
import pytest

from tests.conftest import signup

RANGE_ROUTES = [
    ("POST", "/v1/analytics/trends", {"events": ["page_view"]}),
    ("POST", "/v1/analytics/funnel", {"steps": ["a", "b"]}),
    ("GET", "/v1/analytics/summary", {}),
    ("GET", "/v1/analytics/events", {}),
]


async def _ask(
    client: httpx.AsyncClient, method: str, path: str, body: dict[str, Any], h: Any
) -> httpx.Response:
    if method == "GET":
        return await client.get(path, params=body, headers=h)
    return await client.post(path, json=body, headers=h)


@pytest.mark.parametrize(("method", "path", "base"), RANGE_ROUTES, ids=[r[1] for r in RANGE_ROUTES])
@pytest.mark.parametrize(
    "bounds", [{"start": "2026-01-01"}, {"end": "2026-01-31"}, {"start": "2026-01-01", "end": "2026-01-31"}]
)
async def test_a_period_with_start_or_end_is_refused(
    client: httpx.AsyncClient, method: str, path: str, base: dict[str, Any], bounds: dict[str, str]
) -> None:
    a = await signup(client)
    r = await _ask(client, method, path, {**base, "period": "this_month", **bounds}, a.h())
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "invalid_range", problem
    assert "period" in problem["hint"] and "start" in problem["hint"], problem
    assert [e["field"] for e in problem["errors"]] == ["period"]
    # Each alone is still a range.
    for alone in ({"period": "this_month"}, bounds):
        r = await _ask(client, method, path, {**base, **alone}, a.h())
        assert r.status_code == 200, (alone, r.text)


NON_FINITE = [
    "amount = NaN", "plan in [NaN]", "amount = 1e999", "amount = -Infinity", "amount != Infinity",
    "amount > NaN", "amount <= -1e999", "plan in [pro, Infinity]",
]  # fmt: skip


@pytest.mark.parametrize("expr", NON_FINITE)
async def test_non_finite_numbers_in_filters_are_invalid_filters(
    client: httpx.AsyncClient, expr: str
) -> None:
    a = await signup(client)
    prop, op = expr.split()[:2]
    value = {"=": "NaN", "in": "[1, NaN]", ">": "Infinity"}.get(op, "-Infinity")
    # The object form, as raw JSON text: Python's reader takes NaN and Infinity as numbers.
    as_object = f'{{"property": "{prop}", "op": "{"in" if op == "in" else "eq"}", "value": {value}}}'
    bodies = [
        f'{{"events": ["page_view"], "filters": ["{expr}"]}}',
        f'{{"events": ["page_view"], "filters": [{as_object}]}}',
        f'{{"steps": ["a where {expr}", "b"]}}',
    ]
    for path, body in zip(["trends", "trends", "funnel"], bodies, strict=True):
        h = {**a.h(), "content-type": "application/json"}
        r = await client.post(f"/v1/analytics/{path}", content=body, headers=h)
        assert r.status_code == 422, (body, r.text)
        problem = r.json()
        assert problem["code"] == "invalid_filter" and problem["hint"], problem
        assert "finite" in problem["errors"][0]["message"], problem


async def test_filters_on_source_match_what_the_source_breakdown_shows(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    at = (dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)).replace(microsecond=0)
    sent = [("web", "page_view", "c0"), ("web", "page_view", "c1"), ("api", "page_view", "c2")]
    sent += [("ios", "page_view", "c3"), ("web", "signup", "c0"), ("api", "signup", "c2")]
    events = [
        {"name": n, "source": s, "client_id": c, "timestamp": (at + dt.timedelta(minutes=i)).isoformat()}
        for i, (s, n, c) in enumerate(sent)
    ]
    r = await client.post("/v1/analytics/events", json={"events": events}, headers=a.h())
    assert r.json()["accepted"] == len(sent), r.text

    async def total(filters: list[Any]) -> int:
        body = {"events": ["page_view"], "filters": filters, "period": "last_7_days"}
        r = await client.post("/v1/analytics/trends", json=body, headers=a.h())
        assert r.status_code == 200, r.text
        return sum(s["total"] for s in r.json()["series"])

    assert await total(["$source = web"]) == 2
    assert await total([{"property": "$source", "op": "eq", "value": "api"}]) == 1
    assert await total(["$source != web"]) == 2
    assert await total(["$source in [api, ios]"]) == 2
    assert await total(["$source ~ I"]) == 2
    assert await total(["$source exists"]) == 4 and await total(["$source not exists"]) == 0
    funnel = {
        "steps": ["page_view where $source = web", "signup where $source = web"],
        "period": "last_7_days",
    }
    r = await client.post("/v1/analytics/funnel", json=funnel, headers=a.h())
    assert [s["clients"] for s in r.json()["steps"]] == [2, 1], r.text  # c2 signed up through the api
    for bad in ("$member = x", "$source > 3"):
        body = {"events": ["page_view"], "filters": [bad]}
        r = await client.post("/v1/analytics/trends", json=body, headers=a.h())
        assert r.status_code == 422 and r.json()["code"] == "invalid_filter", r.text
        assert r.json()["errors"][0]["message"].startswith("`$"), r.text


@pytest.mark.parametrize(("method", "path", "base"), RANGE_ROUTES, ids=[r[1] for r in RANGE_ROUTES])
async def test_only_iana_zone_names_are_time_zones(
    client: httpx.AsyncClient, method: str, path: str, base: dict[str, Any]
) -> None:
    a = await signup(client)
    # `localtime` is the server's own /etc/localtime: an answer that changes with the machine.
    for name in ("localtime", "posixrules", "Factory", "Mars/Olympus", "../etc/passwd"):
        r = await _ask(client, method, path, {**base, "time_zone": name}, a.h())
        assert r.status_code == 422, (name, r.text)
        assert r.json()["code"] == "invalid_time_zone" and "IANA" in r.json()["hint"], r.text
    for name in ("UTC", "Europe/Paris", "Asia/Kolkata"):
        r = await _ask(client, method, path, {**base, "time_zone": name}, a.h())
        assert r.status_code == 200, (name, r.text)
