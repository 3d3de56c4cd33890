"""The fast batch path (one msgspec decode, patterns checked batch-wide, rows read by
PostgreSQL from the body) stores exactly what the per-item path stores, and hands anything
else to the per-item path."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest

from core.analytics import fastpath, parsing
from core.uow import Database
from tests.conftest import signup
from tests.core.analytics.support import sql

UTC = dt.UTC


def _events(t: dt.datetime) -> list[dict[str, Any]]:
    plus2 = dt.timezone(dt.timedelta(hours=2))
    return [
        {"id": str(uuid.uuid4()).upper(), "name": "page_view", "timestamp": (t - dt.timedelta(hours=1)).isoformat(),
         "client_id": "visitor-1", "properties": {"path": "/é", "q": 'say "hi" \\ ok', "n": -12, "ok": True, "x": None},
         "source": "web"},
        {"id": str(uuid.uuid4()), "name": "signup", "timestamp": t.astimezone(plus2).isoformat(), "properties": {}},
        {"id": str(uuid.uuid4()), "name": "lead:captured", "timestamp": t.isoformat().replace("+00:00", "Z"),
         "client_id": None, "properties": None},
        {"id": str(uuid.uuid4()), "name": "cta.click", "timestamp": (t - dt.timedelta(minutes=3, microseconds=1500)).isoformat(),
         "properties": {"big": 2**62, "emoji": "\U0001f600"}},
        {"id": str(uuid.uuid4()), "name": "search", "timestamp": None},
    ]  # fmt: skip


async def _stored(db: Database, tenant: str, ids: list[str]) -> list[tuple[Any, ...]]:
    rows = await sql(
        db,
        "SELECT id::text, name, ts, client_id, source, properties::text FROM analytics.events"
        " WHERE tenant_id = CAST(:t AS uuid) AND id = ANY(CAST(:ids AS uuid[]))",
        t=tenant,
        ids=ids,
    )
    return sorted((tuple(r) for r in rows), key=lambda r: ids.index(r[0]))


async def test_the_fast_path_stores_what_the_per_item_path_stores(
    client: httpx.AsyncClient, db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(client)
    t = dt.datetime.now(UTC).replace(microsecond=250_000)
    calls: list[str] = []
    per_item = parsing.parse_items

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append("per-item")
        return per_item(*args, **kwargs)

    monkeypatch.setattr(parsing, "parse_items", spy)
    fast = _events(t)
    r = await client.post("/v1/analytics/events", json={"events": fast}, headers=a.h())
    assert r.status_code == 200 and r.json()["accepted"] == len(fast), r.text
    assert calls == []  # the fast path took it

    monkeypatch.setattr(fastpath, "fast_batch", lambda *a, **k: None)
    slow = [{**e, "id": str(uuid.uuid4())} for e in fast]
    r = await client.post("/v1/analytics/events", json={"events": slow}, headers=a.h())
    assert r.status_code == 200 and r.json()["accepted"] == len(slow), r.text
    assert calls == ["per-item"]

    got_fast = await _stored(db, a.id, [e["id"].lower() for e in fast])
    got_slow = await _stored(db, a.id, [e["id"] for e in slow])
    assert len(got_fast) == len(got_slow) == len(fast)
    for f, s in zip(got_fast, got_slow, strict=True):
        if f[1] == "search":  # no timestamp: each request's own server time
            assert f[3:] == s[3:] and abs(f[2] - s[2]) < dt.timedelta(minutes=1)
        else:
            assert f[1:] == s[1:]
    assert got_fast[1][4] == "app" and got_fast[1][5] == "{}" and got_fast[2][5] == "{}"
    (rolled,) = (await sql(db, "SELECT sum(n) FROM analytics.counts WHERE tenant_id = CAST(:t AS uuid) AND grain = 15", t=a.id))[0]  # fmt: skip
    assert rolled == 2 * len(fast)


@pytest.mark.parametrize(
    "odd",
    [
        {"properties": {"ms": 1.5}},  # a float: its text could differ
        {"properties": {"a": {"nested": 1}}},
        {"properties": {"tab": "a\tb"}},
        {"id": "not-a-uuid"},
        {"timestamp": " "},  # the time with a space for the T: read by the per-item path
        {"properties": {f"k{i}": i for i in range(8)}},
    ],
)
async def test_what_the_fast_schema_refuses_goes_the_per_item_way_and_is_stored(
    client: httpx.AsyncClient, db: Database, odd: dict[str, Any]
) -> None:
    a = await signup(client)
    t = dt.datetime.now(UTC).replace(microsecond=0)
    event = {"id": str(uuid.uuid4()), "name": "page_view", "timestamp": t.isoformat(), **odd}
    if odd.get("timestamp") == " ":
        event["timestamp"] = t.isoformat(sep=" ")
    assert fastpath.validate_batch(json.dumps({"events": [event]}).encode()) is None
    r = await client.post("/v1/analytics/events", json={"events": [event, {"name": "x"}]}, headers=a.h())
    assert r.status_code == 200 and r.json()["accepted"] == 2 and r.json()["rejected"] == 0, r.text


_T = "2026-11-22T10:00:00+00:00"


@pytest.mark.parametrize(
    "odd",
    [
        {"name": "page_view\n"},
        {"client_id": "visitor\n1"},  # a newline inside a value, not only at the end
        {"id": str(uuid.uuid4()) + "\n"},
        {"timestamp": _T + "\n"},
        {"timestamp": "2026-02-30T10:00:00Z"},  # the form is right, the day does not exist
        {"source": "web\n"},
        {"source": None},
        {"source": "platform"},
        {"properties": {"k\n": 1}},
        {"properties": {"k": "\ud800"}},  # a lone surrogate: not text PostgreSQL stores
        {"properties": {"k": 2**63}},
    ],
)
def test_the_fast_checks_leave_anything_doubtful_to_the_per_item_path(odd: dict[str, Any]) -> None:
    plain = {
        "id": str(uuid.uuid4()),
        "name": "page_view",
        "timestamp": _T,
        "client_id": "v-1",
        "source": "web",
    }
    assert fastpath.validate_batch(json.dumps({"events": [plain]}).encode()) is not None
    assert (
        fastpath.validate_batch(
            json.dumps({"events": [plain, {**plain, "id": str(uuid.uuid4()), **odd}]}).encode()
        )
        is None
    )


def test_the_same_id_twice_in_any_case_is_left_to_the_per_item_path() -> None:
    same = str(uuid.uuid4())
    events = [{"id": same, "name": "a"}, {"id": same.upper(), "name": "b"}]
    assert fastpath.validate_batch(json.dumps({"events": events}).encode()) is None
    assert fastpath.validate_batch(json.dumps({"events": events[:1]}).encode()) is not None


async def test_an_idempotency_key_covers_a_fast_batch(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    t = dt.datetime.now(UTC).replace(microsecond=0).isoformat()
    batch = {"events": [{"id": str(uuid.uuid4()), "name": "page_view", "timestamp": t} for _ in range(3)]}
    assert fastpath.validate_batch(json.dumps(batch).encode()) is not None
    key = {**a.h(), "Idempotency-Key": str(uuid.uuid4())}
    first = await client.post("/v1/analytics/events", json=batch, headers=key)
    again = await client.post("/v1/analytics/events", json=batch, headers=key)
    assert first.status_code == again.status_code == 200, again.text
    assert first.json() == again.json() and first.json()["accepted"] == 3  # the stored answer
    other = {"events": [{**batch["events"][0], "id": str(uuid.uuid4())}]}
    reused = await client.post("/v1/analytics/events", json=other, headers=key)
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused"
    (stored,) = (
        await sql(db, "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)", t=a.id)
    )[0]
    assert stored == 3
