"""Ingest: per-item errors with the good events kept, idempotency under resends and concurrency,
scopes, limits, and partitions created on demand with row-level security."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import uuid
from typing import Any

import httpx
import pytest
from sqlalchemy import text

from core.analytics.models import GRAINS
from core.uow import Database
from servers.app import create_app
from tests.conftest import make_org, running, signup
from tests.core.analytics.support import org_id, sql

UTC = dt.UTC


def now() -> dt.datetime:
    return dt.datetime.now(UTC).replace(microsecond=0)


async def stored_count(db: Database, tenant: str, name: str | None = None) -> tuple[int, int, int]:
    """(events [of `name`], events of any name, rollup sum) of a tenant, counted directly in the
    tables."""
    cond = "tenant_id = CAST(:t AS uuid)" + (" AND name = :n" if name else "")
    params: dict[str, Any] = {"t": tenant, "n": name}
    (events,) = (await sql(db, f"SELECT count(*) FROM analytics.events WHERE {cond}", **params))[0]
    (ids,) = (
        await sql(db, "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)", t=tenant)
    )[0]
    per_grain = await sql(
        db, f"SELECT grain, sum(n) FROM analytics.counts WHERE {cond} GROUP BY grain ORDER BY grain", **params
    )
    rolled = {int(g): int(n) for g, n in per_grain}
    # Every grain of the rollup counts every event once.
    assert set(rolled) <= set(GRAINS) and len({rolled.get(g, 0) for g in GRAINS}) == 1, rolled
    await rollups_match_events(db, tenant)
    return int(events), int(ids), rolled.get(15, 0)


async def rollups_match_events(db: Database, tenant: str) -> None:
    """The property rollup and the client sets say what the events say, bucket by bucket."""
    props = await sql(
        db,
        "SELECT grain, name, bucket, props, sum(n) FROM analytics.property_counts"
        " WHERE tenant_id = CAST(:t AS uuid) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4::text",
        t=tenant,
    )
    expected = await sql(
        db,
        "SELECT g.grain, name, date_bin(make_interval(mins => g.grain), ts, TIMESTAMPTZ '2000-01-01Z') AS b,"
        " analytics.rollup_properties(properties) AS p, count(*) FROM analytics.events"
        " CROSS JOIN unnest(CAST(:grains AS integer[])) AS g(grain)"
        " WHERE tenant_id = CAST(:t AS uuid) GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4::text",
        t=tenant,
        grains=list(GRAINS),
    )
    assert [tuple(r) for r in props] == [tuple(r) for r in expected]
    sets = await sql(
        db,
        'SELECT name, bucket, array_agg(DISTINCT c COLLATE "C" ORDER BY c COLLATE "C") FROM analytics.client_sets, unnest(clients) c'
        " WHERE tenant_id = CAST(:t AS uuid) GROUP BY 1, 2 ORDER BY 1, 2",
        t=tenant,
    )
    raw = await sql(
        db,
        "SELECT name, date_bin(interval '15 minutes', ts, TIMESTAMPTZ '2000-01-01Z') AS b,"
        ' array_agg(DISTINCT client_id COLLATE "C" ORDER BY client_id COLLATE "C")'
        " FROM analytics.events WHERE tenant_id = CAST(:t AS uuid) AND client_id IS NOT NULL"
        " GROUP BY 1, 2 ORDER BY 1, 2",
        t=tenant,
    )
    assert [tuple(r) for r in sets] == [tuple(r) for r in raw]


async def test_a_batch_reports_each_bad_event_and_keeps_the_good_ones(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    t = now()
    good: list[dict[str, Any]] = [
        {"id": str(uuid.uuid4()), "name": "page_view", "timestamp": (t - dt.timedelta(hours=1)).isoformat(),
         "client_id": "visitor-1", "properties": {"path": "/"}, "source": "web"},
        {"name": "signup"},  # no id, no timestamp: server time, a fresh id
        {"id": "my-own-id-7", "name": "lead:captured", "timestamp": t.isoformat().replace("+00:00", "Z")},
    ]  # fmt: skip
    bad: list[tuple[Any, str, str | None]] = [
        ("not an object", "not_an_object", None),
        ({"name": "bookings/booking.confirmed"}, "reserved_name", "name"),
        ({"name": "has space"}, "invalid_name", "name"),
        ({"name": ""}, "invalid_name", "name"),
        ({"name": "x", "timestamp": "yesterday"}, "invalid_timestamp", "timestamp"),
        ({"name": "x", "timestamp": "2026-11-20T10:00:00"}, "invalid_timestamp", "timestamp"),
        ({"name": "x", "timestamp": (t + dt.timedelta(minutes=10)).isoformat()}, "timestamp_in_future", "timestamp"),
        ({"name": "x", "timestamp": (t - dt.timedelta(days=400)).isoformat()}, "timestamp_too_old", "timestamp"),
        ({"name": "x", "client_id": "two words"}, "invalid_client_id", "client_id"),
        ({"name": "x", "source": "platform"}, "invalid_source", "source"),
        ({"name": "x", "properties": [1, 2]}, "invalid_properties", "properties"),
        ({"name": "x", "properties": {"big": "y" * 9000}}, "properties_too_large", "properties"),
        ({"name": "x", "id": "has space"}, "invalid_id", "id"),
        # `$` alone would let a trailing newline through (Python's `$` matches before one).
        ({"name": "page_view\n"}, "invalid_name", "name"),
        ({"name": "x", "client_id": "visitor-1\n"}, "invalid_client_id", "client_id"),
        ({"name": "x", "source": "web\n"}, "invalid_source", "source"),
        ({"name": "x", "id": str(uuid.uuid4()) + "\n"}, "invalid_id", "id"),
        ({"name": "x", "colour": "red"}, "unknown_field", "colour"),
    ]  # fmt: skip
    batch: list[Any] = []
    for i in range(max(len(good), len(bad))):
        if i < len(bad):
            batch.append(bad[i][0])
        if i < len(good):
            batch.append(good[i])
    r = await client.post("/v1/analytics/events", json={"events": batch}, headers=a.h())
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["accepted"], body["rejected"], body["duplicates"]) == (len(good), len(bad), 0)
    errors = {e["index"]: e for e in body["errors"]}
    for item, code, field in bad:
        index = batch.index(item)
        assert errors[index]["code"] == code, (item, errors[index])
        assert errors[index]["field"] == field and errors[index]["message"]
    assert body["context"] == {"kind": "personal", "org": None, "role": None}
    listed = (await client.get("/v1/analytics/events", headers=a.h())).json()["items"]
    assert sorted(e["name"] for e in listed) == ["lead:captured", "page_view", "signup"]
    view = next(e for e in listed if e["name"] == "page_view")
    assert view["client_id"] == "visitor-1" and view["source"] == "web" and view["member_id"] == a.id
    assert view["untrusted_properties"] == {"path": "/"} and view["id"] == good[0]["id"]
    assert next(e for e in listed if e["name"] == "signup")["source"] == "app"
    assert await stored_count(db, a.id) == (3, 3, 3)


async def test_one_event_or_a_list_and_a_bad_single_event_is_a_422(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    one = await client.post("/v1/analytics/events", json={"name": "page_view", "id": "e-1"}, headers=a.h())
    assert one.status_code == 200 and one.json()["accepted"] == 1
    assert one.json()["id"] == str(uuid.uuid5(uuid.UUID("6f1d9a52-3c1e-4c8f-9a57-6a0e1f6f2b10"), "e-1"))
    listed = await client.post("/v1/analytics/events", json=[{"name": "a"}, {"name": "b"}], headers=a.h())
    assert listed.json()["accepted"] == 2 and listed.json()["id"] is None
    bad = await client.post("/v1/analytics/events", json={"name": "a b"}, headers=a.h())
    assert bad.status_code == 422 and bad.headers["content-type"].startswith("application/problem+json")
    problem = bad.json()
    assert problem["code"] == "invalid_name" and problem["errors"][0]["field"] == "name"
    assert problem["hint"] == "fix the event's `name` and send it again", problem
    for body, code in (
        ({"events": []}, "empty_batch"),
        ({"events": [{"name": "a"}], "extra": 1}, "invalid_batch"),
        ({"events": "nope"}, "invalid_batch"),
    ):
        r = await client.post("/v1/analytics/events", json=body, headers=a.h())
        assert r.status_code == 422 and r.json()["code"] == code, r.text
    garbled = await client.post(
        "/v1/analytics/events", content=b"{not json", headers={**a.h(), "content-type": "application/json"}
    )
    assert garbled.status_code == 400 and garbled.json()["code"] == "malformed_json"


async def test_events_not_sent_as_json_are_a_415_as_on_every_route(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    for content_type in ("text/plain", "application/x-www-form-urlencoded", None):
        headers = {**a.h(), **({"content-type": content_type} if content_type else {})}
        r = await client.post("/v1/analytics/events", content=b'{"name": "page_view"}', headers=headers)
        assert r.status_code == 415, (content_type, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
        problem = r.json()
        assert (
            problem["code"] == "unsupported_media_type"
            and "Content-Type: application/json" in problem["hint"]
        )
    r = await client.post(
        "/v1/analytics/events", content=b"", headers={**a.h(), "content-type": "text/plain"}
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "body", r.text


async def test_resends_never_double_count(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    oid = await org_id(client, a, org)
    t = now() - dt.timedelta(minutes=30)
    batch = [
        {"id": str(uuid.uuid4()), "name": "page_view", "timestamp": (t + dt.timedelta(seconds=i)).isoformat()}
        for i in range(300)
    ]
    first = (await client.post("/v1/analytics/events", json={"events": batch}, headers=a.h(org=org))).json()
    again = (await client.post("/v1/analytics/events", json={"events": batch}, headers=a.h(org=org))).json()
    assert (first["accepted"], first["duplicates"]) == (300, 0)
    assert (again["accepted"], again["duplicates"]) == (0, 300)
    assert again["duplicate_indexes"] == list(range(300))
    # A resend mixing old and new events stores only the new ones.
    fresh = [{"id": str(uuid.uuid4()), "name": "page_view", "timestamp": t.isoformat()} for _ in range(5)]
    mixed = (
        await client.post("/v1/analytics/events", json={"events": batch[:10] + fresh}, headers=a.h(org=org))
    ).json()
    assert (mixed["accepted"], mixed["duplicates"]) == (5, 10)
    # The same id twice in one batch: one event.
    twice = (
        await client.post("/v1/analytics/events", json={"events": [fresh[0], fresh[0]]}, headers=a.h(org=org))
    ).json()
    assert (twice["accepted"], twice["duplicates"], twice["duplicate_indexes"]) == (0, 2, [0, 1])
    # No id but a timestamp: the content is the id, so the resend matches...
    anon = [{"name": "click", "timestamp": t.isoformat(), "properties": {"n": i}} for i in range(3)]
    assert (await client.post("/v1/analytics/events", json=anon, headers=a.h(org=org))).json()[
        "accepted"
    ] == 3
    assert (await client.post("/v1/analytics/events", json=anon, headers=a.h(org=org))).json()[
        "duplicates"
    ] == 3
    # ...while an event with neither is a new one each time (documented: send ids).
    for _ in range(2):
        r = await client.post("/v1/analytics/events", json={"name": "click"}, headers=a.h(org=org))
        assert r.json()["accepted"] == 1
    assert await stored_count(db, oid, "page_view") == (305, 310, 305)
    # An Idempotency-Key makes even an id-less, time-less request safe to retry.
    key = {"Idempotency-Key": str(uuid.uuid4())}
    k1 = (
        await client.post("/v1/analytics/events", json={"name": "tap"}, headers={**a.h(org=org), **key})
    ).json()
    k2 = (
        await client.post("/v1/analytics/events", json={"name": "tap"}, headers={**a.h(org=org), **key})
    ).json()
    assert k1 == k2 and (await stored_count(db, oid, "tap"))[0] == 1


@pytest.mark.parametrize("size", [1, 40, 2500])  # the array path and the COPY path
async def test_concurrent_resends_count_once(client: httpx.AsyncClient, db: Database, size: int) -> None:
    a = await signup(client)
    t = now() - dt.timedelta(hours=2)
    batch = [
        {"id": str(uuid.uuid4()), "name": "page_view", "timestamp": (t + dt.timedelta(seconds=i)).isoformat()}
        for i in range(size)
    ]
    results = await asyncio.gather(
        *(client.post("/v1/analytics/events", json={"events": batch}, headers=a.h()) for _ in range(6))
    )
    bodies = [r.json() for r in results]
    assert all(r.status_code == 200 for r in results), [r.text[:300] for r in results]
    assert sum(b["accepted"] for b in bodies) == size
    assert sum(b["duplicates"] for b in bodies) == 5 * size
    assert await stored_count(db, a.id) == (size, size, size)


async def test_overlapping_batches_in_parallel_store_the_union_once(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    t = now() - dt.timedelta(hours=3)
    ids = [str(uuid.uuid4()) for _ in range(600)]

    def batch(lo: int, hi: int) -> dict[str, Any]:
        picked = ids[lo:hi][::-1] if lo % 2 else ids[lo:hi]  # different orders, same ids
        return {"events": [{"id": i, "name": "page_view", "timestamp": t.isoformat()} for i in picked]}

    slices = [(0, 300), (150, 450), (300, 600), (100, 500), (0, 600)]
    results = await asyncio.gather(
        *(client.post("/v1/analytics/events", json=batch(lo, hi), headers=a.h()) for lo, hi in slices)
    )
    assert all(r.status_code == 200 for r in results), [r.text[:300] for r in results]
    assert sum(r.json()["accepted"] for r in results) == 600
    assert await stored_count(db, a.id) == (600, 600, 600)


async def test_scopes_brand_site_keys_ingest_but_cannot_read(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    org = await make_org(client, a)
    site = (
        await client.post(
            "/v1/api-keys", json={"name": "site", "scopes": ["analytics:ingest"], "org": org}, headers=a.h()
        )
    ).json()["token"]
    reader = (
        await client.post("/v1/api-keys", json={"name": "r", "scopes": ["analytics:read"]}, headers=a.h())
    ).json()["token"]
    site_h = {"Authorization": f"Bearer {site}"}
    sent = await client.post("/v1/analytics/events", json={"name": "page_view"}, headers=site_h)
    assert sent.status_code == 200 and sent.json()["context"]["org"] == org
    for method, path, body in (
        ("POST", "/v1/analytics/trends", {"events": ["page_view"]}),
        ("GET", "/v1/analytics/summary", None),
        ("GET", "/v1/analytics/events", None),
        ("POST", "/v1/analytics/funnel", {"steps": ["a", "b"]}),
    ):
        refused = await client.request(method, path, json=body, headers=site_h)
        assert refused.status_code == 403 and refused.json()["code"] == "missing_scope", refused.text
    reader_h = {"Authorization": f"Bearer {reader}", "X-Atlilith-Org": org}
    cannot = await client.post("/v1/analytics/events", json={"name": "x"}, headers=reader_h)
    assert cannot.status_code == 403 and cannot.json()["code"] == "missing_scope"
    seen = await client.post("/v1/analytics/trends", json={"events": ["page_view"]}, headers=reader_h)
    assert seen.status_code == 200 and seen.json()["series"][0]["total"] == 1
    # The source of a key's events defaults to `api`.
    listed = (await client.get("/v1/analytics/events", headers=reader_h)).json()["items"]
    assert [e["source"] for e in listed] == ["api"]


async def test_body_and_batch_limits(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    # 2 MiB is over the default body limit, but not the analytics ingest one.
    padding = "p" * 4000
    big = {"events": [{"name": "page_view", "properties": {"pad": padding}} for _ in range(520)]}
    assert len(json.dumps(big)) > 2 * 1_048_576
    r = await client.post("/v1/analytics/events", json=big, headers=a.h())
    assert r.status_code == 200 and r.json()["accepted"] == 520
    elsewhere = await client.post("/v1/clients", json={"name": "x", "notes": padding * 300}, headers=a.h())
    assert elsewhere.status_code == 413 and elsewhere.json()["code"] == "payload_too_large"
    too_many = {"events": [{"name": "e"}] * 10_001}
    r = await client.post("/v1/analytics/events", json=too_many, headers=a.h())
    assert r.status_code == 422 and r.json()["code"] == "batch_too_large" and r.json()["limit"] == 10_000
    # The analytics limit is its own setting.
    small = create_app(
        db.settings.model_copy(update={"analytics_max_body_bytes": 4096}), db=db, run_relay=False
    )
    async with (
        running(small),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=small), base_url="http://testserver") as c,
    ):
        refused = await c.post("/v1/analytics/events", json=big, headers=a.h())
        assert refused.status_code == 413


async def test_a_missing_month_gets_its_partition_on_demand_with_rls(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Outside the partitions made ahead (here: a long backfill window), ingest creates the
    month's partition — as the owner, with the tenant policy and the app role's grants."""
    wide = Database(db.settings.model_copy(update={"analytics_backfill_days": 1500}))
    app = create_app(wide.settings, db=wide, run_relay=False)
    try:
        transport = httpx.ASGITransport(app=app)
        async with running(app), httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            a = await signup(c)
            # Three years back: inside the 1500-day window, outside the default 365 days that are
            # made ahead, whatever the date (a literal date would leave the window one day).
            today = now()
            old = dt.datetime(today.year - 3, today.month, 14, 12, 0, tzinfo=UTC)
            partition = f"analytics_partitions.events_{old:%Y_%m}"
            before = await sql(db, f"SELECT to_regclass('{partition}') IS NULL")
            assert before[0][0] is True
            r = await c.post(
                "/v1/analytics/events",
                json={
                    "events": [
                        {"name": "old", "timestamp": old.isoformat(), "properties": {"i": i}}
                        for i in range(3)
                    ]
                },
                headers=a.h(),
            )
            assert r.status_code == 200 and r.json()["accepted"] == 3, r.text
            found = await c.get(
                "/v1/analytics/events",
                params={"start": f"{old:%Y-%m}-01", "end": f"{old:%Y-%m}-28"},
                headers=a.h(),
            )
            assert len(found.json()["items"]) == 3
    finally:
        await wide.dispose()
    (rls, policies, grants) = (
        await sql(
            db,
            "SELECT c.relrowsecurity,"
            " (SELECT count(*) FROM pg_policy p WHERE p.polrelid = c.oid),"
            " has_table_privilege(:app, c.oid, 'SELECT,INSERT')"
            " FROM pg_class c WHERE c.oid = to_regclass(:partition)",
            app=db.settings.db_app_role,
            partition=partition,
        )
    )[0]
    assert (rls, policies, grants) == (True, 1, True)
    # Read directly (not through the parent), the partition's own policy hides the rows.
    async with db.engine.connect() as conn:
        await conn.execute(text("SELECT set_config('app.mode', 'user', false)"))
        hidden = (await conn.execute(text(f"SELECT count(*) FROM {partition}"))).scalar()
        assert hidden == 0
        await conn.rollback()


async def test_the_app_role_cannot_write_through_copy_or_into_partitions_of_others(
    client: httpx.AsyncClient, db: Database
) -> None:
    """The reason ingest goes through a temp table: COPY into the RLS table is refused."""
    a = await signup(client)
    async with db.engine.connect() as conn:
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        with pytest.raises(Exception, match="row-level security"):
            await driver.copy_records_to_table(
                "events",
                schema_name="analytics",
                columns=("id", "ts", "name", "source", "person_id"),
                records=[(uuid.uuid4(), now(), "x", "t", uuid.UUID(a.id))],
            )


async def test_the_daily_schedule_keeps_months_ahead_and_the_function_refuses_absurd_ranges(
    db: Database,
) -> None:
    from dateutil.relativedelta import relativedelta
    from sqlalchemy.exc import DBAPIError

    from core.analytics import partitions
    from core.analytics.handlers import keep_partitions_ahead
    from core.events import ScheduledRun

    ahead = db.settings.analytics_partitions_ahead_months + 2
    wide = Database(db.settings.model_copy(update={"analytics_partitions_ahead_months": ahead}))
    # Read before the run, which reads the clock itself: the month it reaches is this one or,
    # when a month ends meanwhile, the next (which covers this one).
    before = now()
    try:
        async with wide.system() as uow:
            await keep_partitions_ahead(ScheduledRun("analytics.keep_partitions_ahead", before), uow)
    finally:
        await wide.dispose()
    last = (before + relativedelta(months=ahead)).strftime("%Y_%m")
    (exists,) = (await sql(db, f"SELECT to_regclass('analytics_partitions.events_{last}') IS NOT NULL"))[0]
    assert exists
    # Idempotent: nothing new the second time.
    assert await partitions.ensure_partitions(db, now(), now()) == 0
    for start, end in (
        ("1999-01-01T00:00:00Z", "1999-02-01T00:00:00Z"),
        ("2026-01-01T00:00:00Z", "2031-01-01T00:00:00Z"),
    ):
        with pytest.raises(DBAPIError, match="out of bounds"):
            async with db.system() as uow:
                await uow.session.execute(
                    text("SELECT analytics.ensure_partitions(:s, :e)"),
                    {"s": dt.datetime.fromisoformat(start), "e": dt.datetime.fromisoformat(end)},
                )


async def test_properties_that_are_not_json_text_say_why(client: httpx.AsyncClient) -> None:
    a = await signup(client)
    h = {**a.h(), "content-type": "application/json"}
    # As raw JSON text: the escape of a lone surrogate, and the NaN Python's reader takes.
    cases = [
        (r'{"name": "t1", "properties": {"s": "\ud800"}}', "a lone surrogate"),
        ('{"name": "t1", "properties": {"n": NaN}}', "NaN and Infinity are not JSON"),
        (r'{"name": "t1", "properties": {"n": Infinity, "s": "\ud800"}}', "NaN and Infinity are not JSON"),
    ]
    for body, reason in cases:
        one = await client.post("/v1/analytics/events", content=body, headers=h)
        assert one.status_code == 422 and one.json()["code"] == "invalid_properties", one.text
        assert reason in one.json()["errors"][0]["message"], (body, one.text)
        batch = await client.post("/v1/analytics/events", content=f'{{"events": [{body}]}}', headers=h)
        assert batch.status_code == 200 and batch.json()["rejected"] == 1, batch.text
        assert reason in batch.json()["errors"][0]["message"], (body, batch.text)
