"""A query parameter an operation does not take is refused with its name and the ones it does
take, never ignored: `?from=` for `from_at` would otherwise answer the whole unfiltered list as
if it were the filtered one."""

from __future__ import annotations

import httpx

from tests.conftest import signup


async def test_an_unknown_query_parameter_is_named_with_the_ones_taken(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    r = await client.get("/v1/bookings", params={"from": "2026-12-01", "to": "2026-12-02"}, headers=a.h())
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == "validation_failed" and problem["detail"] == "unknown query parameter: from, to"
    assert [(e["field"], e["code"]) for e in problem["errors"]] == [
        ("from", "extra_forbidden"),
        ("to", "extra_forbidden"),
    ]
    assert "`from_at`" in problem["hint"] and "`to_at`" in problem["hint"] and "`cursor`" in problem["hint"]
    r = await client.get("/v1/me", params={"verbose": "1"}, headers=a.h())
    assert r.status_code == 422 and r.json()["hint"] == "send no query parameters"
    # What the operations declare passes: plain parameters, the page's, and a query model's fields.
    for path, params in (
        ("/v1/bookings", {"from_at": "2026-12-01T00:00:00Z", "status": "held", "limit": "5"}),
        ("/v1/messaging/threads", {"label": "x", "unread": "true", "q": "hello", "limit": "2"}),
        ("/v1/clients", {"q": "ann"}),
        ("/v1/me", {}),
    ):
        r = await client.get(path, params=params, headers=a.h())
        assert r.status_code == 200, (path, r.text)
