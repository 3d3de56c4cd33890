"""What a request sends that an operation cannot read is named, never ignored or guessed at: a
query parameter it does not take (`?from=` for `from_at` would otherwise answer the whole
unfiltered list), and a body sent as something other than JSON."""

from __future__ import annotations

import gzip

import httpx

from tests.conftest import signup
from tests.core.bookings.helpers import make_service


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
    # An operation that takes no query ignores one: calendar apps fetch feeds with cache-busters.
    r = await client.get("/v1/me", params={"nocache": "1"}, headers=a.h())
    assert r.status_code == 200, r.text
    # What the operations declare passes: plain parameters, the page's, and a query model's fields.
    for path, params in (
        ("/v1/bookings", {"from_at": "2026-12-01T00:00:00Z", "status": "held", "limit": "5"}),
        ("/v1/messaging/threads", {"label": "x", "unread": "true", "q": "hello", "limit": "2"}),
        ("/v1/clients", {"q": "ann"}),
        ("/v1/me", {}),
    ):
        r = await client.get(path, params=params, headers=a.h())
        assert r.status_code == 200, (path, r.text)


async def test_a_body_not_sent_as_json_is_told_so(client: httpx.AsyncClient) -> None:
    body = '{"login": "someone", "password": "a-long-password"}'
    for content_type in ("text/plain", None):
        headers = {"content-type": content_type} if content_type else {}
        r = await client.post("/v1/auth/login", content=body, headers=headers)
        assert r.status_code == 415, r.text
        problem = r.json()
        assert problem["code"] == "unsupported_media_type"
        assert problem["hint"] == "send the body as JSON with Content-Type: application/json"
    # A union body (one message or a batch) is told the same, not each branch's complaint.
    a = await signup(client)
    r = await client.post(
        "/v1/messaging/inbound",
        content="body=hello",
        headers={**a.h(), "content-type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 415 and r.json()["code"] == "unsupported_media_type", r.text
    # Sent as JSON, the same body is read (and refused for what it says, not how it came).
    r = await client.post("/v1/auth/login", content=body, headers={"content-type": "application/json"})
    assert r.status_code != 415, r.text


async def test_a_body_that_is_no_text_is_a_malformed_body_with_a_hint(client: httpx.AsyncClient) -> None:
    """Gzip or Latin-1 bytes under a JSON content type: FastAPI's bare 400 `http_error`, with no
    hint, became a stable code saying what to send."""
    a = await signup(client)
    json_type = {"content-type": "application/json"}
    cases: tuple[tuple[bytes, dict[str, str], str], ...] = (
        (gzip.compress(b'{"name": "Ada"}'), {"content-encoding": "gzip"}, "uncompressed"),
        ('{"name": "Zoë"}'.encode("latin-1"), {}, "UTF-8"),
    )
    for body, extra, hinted in cases:
        r = await client.post("/v1/clients", content=body, headers=a.h() | json_type | extra)
        assert r.status_code == 400 and r.headers["content-type"].startswith("application/problem+json")
        assert r.json()["code"] == "malformed_body" and hinted in r.json()["hint"], r.json()
    assert (await client.get("/v1/clients", headers=a.h())).json()["items"] == []


async def test_a_field_that_cannot_be_cleared_says_so_with_a_hint(client: httpx.AsyncClient) -> None:
    """Update fields are nullable (null clears the ones that may be empty); a client's name or a
    service's duration may not be, and the refusal says what to send instead."""
    a = await signup(client)
    made = (await client.post("/v1/clients", json={"name": "Ada"}, headers=a.h())).json()
    service = await make_service(client, a)
    for path, field in (
        (f"/v1/clients/{made['id']}", "name"),
        (f"/v1/bookings/services/{service['id']}", "duration_minutes"),
    ):
        r = await client.patch(path, json={field: None}, headers=a.h())
        assert r.status_code == 422, r.text
        assert [(e["field"], e["message"]) for e in r.json()["errors"]] == [(field, "cannot be cleared")]
        assert "leave" in r.json()["hint"]
