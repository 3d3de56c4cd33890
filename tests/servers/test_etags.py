"""ETag / If-Match on every editable resource (core.preconditions): a stale tag is refused with
412 and nothing is written, the current one passes, two writers holding the same tag cannot
both pass, and another tenant learns nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from tests.conftest import Account, signup, slug
from tests.core.bookings.helpers import EVERY_DAY, make_service, set_hours


@dataclass
class Resource:
    """Where one editable resource is read and written, and two different changes to it."""

    url: str
    method: str
    first: dict[str, Any]
    second: dict[str, Any]
    show: Callable[[dict[str, Any]], Any]  # the part of a read that the change shows in


Maker = Callable[[httpx.AsyncClient, Account], Awaitable[Resource]]


async def _service(c: httpx.AsyncClient, a: Account) -> Resource:
    s = await make_service(c, a)
    return Resource(
        f"/v1/bookings/services/{s['id']}",
        "PATCH",
        {"name": "Cut"},
        {"name": "Colour"},
        lambda b: b["name"],
    )


async def _availability(c: httpx.AsyncClient, a: Account) -> Resource:
    await set_hours(c, a)
    return Resource(
        "/v1/bookings/availability",
        "PUT",
        {"time_zone": "Europe/Paris", "weekly": EVERY_DAY[:2], "overrides": []},
        {"time_zone": "Europe/Paris", "weekly": EVERY_DAY[:3], "overrides": []},
        lambda b: len(b["weekly"]),
    )


async def _client(c: httpx.AsyncClient, a: Account) -> Resource:
    made = (await c.post("/v1/clients", json={"name": "Ada"}, headers=a.h())).json()
    return Resource(
        f"/v1/clients/{made['id']}", "PATCH", {"notes": "one"}, {"notes": "two"}, lambda b: b["notes"]
    )


async def _brand(c: httpx.AsyncClient, a: Account) -> Resource:
    made = (await c.post("/v1/brands", json={"slug": slug("b"), "name": "B"}, headers=a.h())).json()
    return Resource(
        f"/v1/brands/{made['id']}", "PATCH", {"name": "One"}, {"name": "Two"}, lambda b: b["name"]
    )


async def _thread(c: httpx.AsyncClient, a: Account) -> Resource:
    client = (await c.post("/v1/clients", json={"name": "Bo"}, headers=a.h())).json()
    made = await c.post(
        "/v1/messaging/threads",
        json={"client_id": client["id"], "channel": "portal", "subject": "Hi"},
        headers=a.h(),
    )
    assert made.status_code == 201, made.text
    return Resource(
        f"/v1/messaging/threads/{made.json()['thread']['id']}",
        "PATCH",
        {"labels": ["one"]},
        {"labels": ["two"]},
        lambda b: (b.get("thread") or b)["labels"],
    )


async def _installation(c: httpx.AsyncClient, a: Account) -> Resource:
    made = await c.post("/v1/installations", json={"component": "bookings", "config": {}}, headers=a.h())
    assert made.status_code in {200, 201}, made.text
    return Resource(
        "/v1/installations/bookings",
        "PATCH",
        {"config": {"n": 1}},
        {"config": {"n": 2}},
        lambda b: b["config"],
    )


async def _settings(c: httpx.AsyncClient, a: Account) -> Resource:
    return Resource(
        "/v1/messaging/settings",
        "PUT",
        {"default_agent_mode": "auto"},
        {"default_agent_mode": "off"},
        lambda b: b["default_agent_mode"],
    )


MAKERS: dict[str, Maker] = {
    "service": _service,
    "availability": _availability,
    "client": _client,
    "brand": _brand,
    "thread": _thread,
    "installation": _installation,
    "messaging settings": _settings,
}
every_resource = pytest.mark.parametrize("kind", list(MAKERS))


async def _write(
    c: httpx.AsyncClient, a: Account, r: Resource, body: dict[str, Any], tag: str | None = None
) -> httpx.Response:
    headers = {**a.h(), **({"If-Match": tag} if tag else {})}
    return await c.request(r.method, r.url, json=body, headers=headers)


@every_resource
async def test_a_stale_etag_is_refused_and_nothing_is_written(client: httpx.AsyncClient, kind: str) -> None:
    a = await signup(client)
    r = await MAKERS[kind](client, a)
    read = await client.get(r.url, headers=a.h())
    assert read.status_code == 200 and read.headers["ETag"].startswith('"'), read.text
    stale = read.headers["ETag"]

    changed = await _write(client, a, r, r.first, stale)
    assert changed.status_code == 200, changed.text
    assert changed.headers["ETag"] != stale
    after = await client.get(r.url, headers=a.h())
    # The write's answer carries the tag a read gives from then on.
    assert after.headers["ETag"] == changed.headers["ETag"]

    refused = await _write(client, a, r, r.second, stale)
    assert refused.status_code == 412, refused.text
    assert refused.headers["content-type"] == "application/problem+json"
    problem = refused.json()
    assert problem["code"] == "precondition_failed" and "re-read" in problem["hint"]
    now = await client.get(r.url, headers=a.h())
    assert r.show(now.json()) == r.show(after.json()) and now.headers["ETag"] == after.headers["ETag"]

    # A weak tag never matches (strong comparison); the current one, in a list or `*`, does.
    weak = await _write(client, a, r, r.second, "W/" + after.headers["ETag"])
    assert weak.status_code == 412
    listed = await _write(client, a, r, r.second, f'"nope", {after.headers["ETag"]}')
    assert listed.status_code == 200 and r.show(listed.json()) == r.show(
        (await client.get(r.url, headers=a.h())).json()
    )
    assert (await _write(client, a, r, r.first, "*")).status_code == 200
    # Without If-Match: last write wins, as before.
    assert (await _write(client, a, r, r.second)).status_code == 200


@every_resource
async def test_two_writers_with_the_same_etag_cannot_both_win(client: httpx.AsyncClient, kind: str) -> None:
    a = await signup(client)
    r = await MAKERS[kind](client, a)
    tag = (await client.get(r.url, headers=a.h())).headers["ETag"]
    results = await asyncio.gather(
        *(_write(client, a, r, body, tag) for body in (r.first, r.second, r.first, r.second))
    )
    codes = sorted(res.status_code for res in results)
    assert codes == [200, 412, 412, 412], [res.text for res in results]
    winner = next(res for res in results if res.status_code == 200)
    final = await client.get(r.url, headers=a.h())
    assert r.show(final.json()) == r.show(winner.json()) and final.headers["ETag"] == winner.headers["ETag"]


@every_resource
async def test_another_tenant_gets_no_tag_and_cannot_write(client: httpx.AsyncClient, kind: str) -> None:
    a, b = await signup(client), await signup(client)
    r = await MAKERS[kind](client, a)
    assert (await _write(client, a, r, r.first)).status_code == 200  # a's is not the default
    read = await client.get(r.url, headers=a.h())
    tag = read.headers["ETag"]
    theirs = await client.get(r.url, headers=b.h())
    if kind in {"availability", "messaging settings"}:
        # A per-context resource: b reads b's own, whose tag is not a's.
        assert theirs.status_code == 200 and theirs.headers["ETag"] != tag
        refused = await _write(client, b, r, r.second, tag)
        assert refused.status_code == 412
    else:
        assert theirs.status_code == 404 and "ETag" not in theirs.headers
        refused = await _write(client, b, r, r.second, tag)
        assert refused.status_code == 404  # not 412: nothing about a's resource is told
    untouched = await client.get(r.url, headers=a.h())
    assert untouched.headers["ETag"] == tag and r.show(untouched.json()) == r.show(read.json())
