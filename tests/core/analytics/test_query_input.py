"""What a query may ask, refused as a clear 422 on every route rather than half-answered: a
period with start/end, filters that match nothing by construction, names that are no zone."""

from __future__ import annotations

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
