"""Trends, funnel and summary give exactly what naive SQL (and an independent Python reading of
the same rows) gives: through the rollup and through raw events, across DST changes and a
half-hour zone, with filters, breakdowns and comparison."""

from __future__ import annotations

import datetime as dt
import random
import re
import statistics
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from core.analytics import counting
from core.analytics.filters import parse_text
from core.analytics.models import ROLLUP_PROPERTIES
from core.analytics.timebuckets import aligned, bucket_starts, resolve_range, zone
from core.uow import Database
from servers.app import create_app
from tests.conftest import Account, join_org, make_org, running, signup
from tests.core.analytics.support import Ev, caller, org_id, put, sql

UTC = dt.UTC
START = dt.datetime(2026, 10, 1, tzinfo=UTC)
END = dt.datetime(2026, 11, 20, tzinfo=UTC)
NAMES = ["page_view", "signup", "purchase"]
# Instants around the DST changes (Paris: 2026-10-25 01:00Z; New York: 2026-11-01 06:00Z)
# and the half-hour offset of Kolkata.
TRICKY = [
    "2026-10-24T21:59:59Z", "2026-10-24T22:00:00Z", "2026-10-25T00:30:00Z", "2026-10-25T00:59:59Z",
    "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T22:59:59Z", "2026-10-25T23:00:00Z",
    "2026-11-01T04:30:00Z", "2026-11-01T05:00:00Z", "2026-11-01T05:45:00Z", "2026-11-01T06:00:00Z",
    "2026-11-01T06:15:00Z", "2026-11-01T07:00:00Z", "2026-10-10T18:29:59Z", "2026-10-10T18:30:00Z",
    "2026-10-11T18:00:00Z", "2026-10-11T18:45:00Z",
]  # fmt: skip


@dataclass
class Data:
    client: httpx.AsyncClient
    owner: Account
    admin: Account
    member: Account
    outsider: Account
    org: str
    org_id: str
    events: list[tuple[str, dt.datetime, str | None, dict[str, Any], str]]  # + member id


def _props(rng: random.Random) -> dict[str, Any]:
    props: dict[str, Any] = {}
    if rng.random() < 0.85:
        props["plan"] = rng.choice(["pro", "team", "free", "Pro Max", "PRO"])
    roll = rng.random()
    if roll < 0.5:
        props["amount"] = rng.randint(-5, 200)
    elif roll < 0.7:
        props["amount"] = rng.choice([2.5, 10.25, 99.5])
    elif roll < 0.8:
        props["amount"] = rng.choice(["42", "7.5", "n/a", "-3"])
    elif roll < 0.85:
        props["amount"] = rng.choice([True, None])
    if rng.random() < 0.6:
        props["path"] = rng.choice(["/", "/pricing", "/Pricing/team", "/blog/x", "/book"])
    if rng.random() < 0.3:
        props["zip"] = rng.choice([75001, "75001", "75002", 10001])
    if rng.random() < 0.2:
        props["coupon"] = rng.choice(["A", "B"])
    return props


@pytest.fixture(scope="module")
async def data(db: Database) -> AsyncIterator[Data]:
    app = create_app(db.settings, db=db, run_relay=False)
    async with running(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            owner, admin = await signup(client, "own"), await signup(client, "adm")
            member, outsider = await signup(client, "mem"), await signup(client, "out")
            org = await make_org(client, owner)
            for who, role in ((admin, "admin"), (member, "member")):
                await join_org(client, org, owner, who, role)
            oid = await org_id(client, owner, org)
            rng = random.Random(20261122)
            clients = [f"c{i}" for i in range(40)]
            span = int((END - START).total_seconds())
            events: list[tuple[str, dt.datetime, str | None, dict[str, Any], str]] = []
            people = [owner, admin, member]
            for _ in range(2500):
                ts = START + dt.timedelta(seconds=rng.randrange(span))
                name = rng.choices(NAMES, weights=[6, 2, 1])[0]
                who = people[rng.choices([0, 1, 2], weights=[5, 3, 2])[0]]
                client_id = rng.choice(clients) if rng.random() < 0.9 else None
                events.append((name, ts, client_id, _props(rng), who.id))
            for i, raw in enumerate(TRICKY):
                ts = dt.datetime.fromisoformat(raw)
                events.append((NAMES[i % 2], ts, f"c{i}", {"plan": "pro"}, people[i % 3].id))
            by_person: dict[str, list[Ev]] = defaultdict(list)
            for name, ts, cid, props, pid in events:
                by_person[pid].append((name, ts, cid, props))
            for pid, evs in by_person.items():
                await put(db, pid, oid, evs)
            # Noise the org must never count: the owner's personal events, another tenant's.
            await put(
                db, owner.id, None, [("page_view", START + dt.timedelta(days=3), "c1", {"plan": "pro"})] * 1
            )
            await put(
                db, outsider.id, None, [("page_view", START + dt.timedelta(days=4), "c1", {"plan": "x"})] * 1
            )
            yield Data(client, owner, admin, member, outsider, org, oid, events)


async def trends(
    d: Data, body: dict[str, Any], who: Account | None = None, org: str | None = "org"
) -> dict[str, Any]:
    headers = (who or d.owner).h(org=d.org if org == "org" else org)
    r = await d.client.post("/v1/analytics/trends", json=body, headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


def local_key(instant: dt.datetime, tz: ZoneInfo, interval: str) -> dt.datetime:
    """What naive SQL groups by: date_trunc(interval, ts AT TIME ZONE tz)."""
    local = instant.astimezone(tz).replace(tzinfo=None, fold=0)
    if interval == "hour":
        return local.replace(minute=0, second=0, microsecond=0)
    day = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "day":
        return day
    if interval == "week":
        return day - dt.timedelta(days=day.weekday())
    return day.replace(day=1)


async def naive_counts(
    db: Database,
    tenant: str,
    names: list[str],
    s: dt.datetime,
    e: dt.datetime,
    tz: str,
    interval: str,
    measure: str = "count",
) -> dict[tuple[str, dt.datetime], int]:
    agg = "count(DISTINCT client_id)" if measure == "unique_clients" else "count(*)"
    rows = await sql(
        db,
        f"SELECT name, date_trunc(:unit, ts AT TIME ZONE :tz) AS local, {agg} FROM analytics.events"
        " WHERE tenant_id = CAST(:t AS uuid) AND name = ANY(:names) AND ts >= :s AND ts < :e"
        " GROUP BY 1, 2",
        unit=interval,
        tz=tz,
        t=tenant,
        names=names,
        s=s,
        e=e,
    )
    return {(r[0], r[1]): int(r[2]) for r in rows if r[2]}


def folded(out: dict[str, Any], tz: ZoneInfo, interval: str) -> dict[tuple[str, dt.datetime], int]:
    """The API's series keyed like naive SQL (the repeated fall-back hour summed)."""
    keyed: dict[tuple[str, dt.datetime], int] = defaultdict(int)
    starts = [dt.datetime.fromisoformat(b) for b in out["buckets"]]
    for series in out["series"]:
        for start, value in zip(starts, series["values"], strict=True):
            if value:
                keyed[(series["event"], local_key(start, tz, interval))] += value
    return dict(keyed)


CASES = [
    ("Europe/Paris", "hour", "2026-10-23T03:07:11Z", "2026-10-27T17:53:02Z"),
    ("Europe/Paris", "day", "2026-10-02T03:07:11Z", "2026-11-18T17:53:02Z"),
    ("Europe/Paris", "week", "2026-10-01", "2026-11-19"),
    ("Europe/Paris", "month", "2026-10-01", "2026-11-19"),
    ("America/New_York", "hour", "2026-10-30", "2026-11-02"),
    ("America/New_York", "day", "2026-10-02T00:00:00-04:00", "2026-11-15T12:34:56-05:00"),
    ("Asia/Kolkata", "hour", "2026-10-10", "2026-10-12"),
    ("Asia/Kolkata", "day", "2026-10-01", "2026-11-19"),
    ("UTC", "week", "2026-10-01T00:00:00Z", "2026-11-20T00:00:00Z"),
    ("Asia/Kathmandu", "day", "2026-10-05", "2026-10-20"),
]


@pytest.mark.parametrize(("tz", "interval", "start", "end"), CASES)
async def test_counts_equal_naive_sql_in_any_zone(
    data: Data, db: Database, tz: str, interval: str, start: str, end: str
) -> None:
    out = await trends(
        data, {"events": NAMES, "interval": interval, "time_zone": tz, "start": start, "end": end}
    )
    zone_info = ZoneInfo(tz)
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    expected = await naive_counts(db, data.org_id, NAMES, s, e, tz, interval)
    assert folded(out, zone_info, interval) == expected
    assert sum(v for v in expected.values()) > 0
    assert out["computed_from"] in ("rollup", "rollup+raw")
    assert {x["event"]: x["total"] for x in out["series"]} == {
        n: sum(v for (name, _), v in expected.items() if name == n) for n in NAMES
    }
    # The same query straight from raw events gives the same numbers.
    async with caller(db, data.owner, data.org) as (ctx, uow):
        rng = resolve_range(zone(tz), period=None, start=start, end=end, now=dt.datetime.now(UTC))
        th = bucket_starts(rng, interval)
        spec = counting.Spec(ctx.tenant_id, NAMES, "count", [], None, 10)
        raw = await counting.compute(uow, spec, rng, th, use_rollup=False)
        rolled = await counting.compute(uow, spec, rng, th)
    assert raw.path == "raw" and rolled.path != "raw"
    # Zones on whole hours are served by the hourly rollup rows, the others by 15-minute rows.
    assert all(aligned(t, 60) for t in th) == (tz not in ("Asia/Kolkata", "Asia/Kathmandu"))
    assert raw.values == rolled.values and raw.totals == rolled.totals


async def test_dst_buckets_are_local_and_the_repeated_hour_is_split(data: Data, db: Database) -> None:
    ny = await trends(
        data,
        {
            "events": NAMES,
            "interval": "hour",
            "time_zone": "America/New_York",
            "start": "2026-11-01",
            "end": "2026-11-01",
        },
    )
    labels = ny["buckets"]
    assert len(labels) == 25  # the day has 25 hours
    assert labels[1:4] == [
        "2026-11-01T01:00:00-04:00",
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]
    per_label = {b: sum(s["values"][i] for s in ny["series"]) for i, b in enumerate(labels)}
    # 05:00Z and 05:45Z are 01:xx EDT; 06:00Z and 06:15Z are 01:xx EST.
    ((edt,), (est,)) = [
        (
            await sql(
                db,
                "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)"
                " AND name = ANY(:n) AND ts >= :s AND ts < :e",
                t=data.org_id, n=NAMES, s=dt.datetime(2026, 11, 1, h, tzinfo=UTC), e=dt.datetime(2026, 11, 1, h + 1, tzinfo=UTC),
            )
        )[0]
        for h in (5, 6)
    ]  # fmt: skip
    assert per_label["2026-11-01T01:00:00-04:00"] == edt >= 2
    assert per_label["2026-11-01T01:00:00-05:00"] == est >= 2
    paris = await trends(
        data,
        {
            "events": NAMES,
            "interval": "day",
            "time_zone": "Europe/Paris",
            "start": "2026-10-24",
            "end": "2026-10-26",
        },
    )
    assert paris["buckets"] == [
        "2026-10-24T00:00:00+02:00",
        "2026-10-25T00:00:00+02:00",
        "2026-10-26T00:00:00+01:00",
    ]
    # 2026-10-24T22:00Z is 00:00 on the 25th in Paris; 2026-10-25T22:59:59Z is still the 25th (CET).
    day25 = sum(s["values"][1] for s in paris["series"])
    (expected,) = (
        await sql(
            db,
            "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid) AND name = ANY(:n)"
            " AND ts >= '2026-10-24T22:00:00Z' AND ts < '2026-10-25T23:00:00Z'",
            t=data.org_id,
            n=NAMES,
        )
    )[0]
    assert day25 == expected
    kolkata = await trends(
        data,
        {
            "events": NAMES,
            "interval": "day",
            "time_zone": "Asia/Kolkata",
            "start": "2026-10-10",
            "end": "2026-10-11",
        },
    )
    assert kolkata["buckets"] == ["2026-10-10T00:00:00+05:30", "2026-10-11T00:00:00+05:30"]
    assert kolkata["query"]["range"]["end"] == "2026-10-12T00:00:00+05:30"


@pytest.mark.parametrize(
    ("tz", "interval"), [("Europe/Paris", "day"), ("Asia/Kolkata", "hour"), ("UTC", "week")]
)
async def test_unique_clients_equal_naive_count_distinct(
    data: Data, db: Database, tz: str, interval: str
) -> None:
    start, end = ("2026-10-20", "2026-10-27") if interval == "hour" else ("2026-10-01", "2026-11-19")
    out = await trends(
        data,
        {
            "events": NAMES,
            "measure": "unique_clients",
            "interval": interval,
            "time_zone": tz,
            "start": start,
            "end": end,
        },
    )
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    expected = await naive_counts(db, data.org_id, NAMES, s, e, tz, interval, "unique_clients")
    got = {
        (x["event"], local_key(dt.datetime.fromisoformat(b), ZoneInfo(tz), interval)): v
        for x in out["series"]
        for b, v in zip(out["buckets"], x["values"], strict=True)
        if v
    }
    # Distinct clients come from the per-bucket client sets (and raw events off the grid).
    assert got == expected and out["computed_from"] in ("rollup", "rollup+raw")
    totals = await sql(
        db,
        "SELECT name, count(DISTINCT client_id) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)"
        " AND ts >= :s AND ts < :e GROUP BY 1",
        t=data.org_id,
        s=s,
        e=e,
    )
    assert {x["event"]: x["total"] for x in out["series"]} == {r[0]: r[1] for r in totals}


def _text(v: Any) -> str | None:
    if v is None:
        return None
    return v if isinstance(v, str) else __import__("json").dumps(v)


def _json_eq(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return Decimal(str(a)) == Decimal(str(b))
    return bool(type(a) is type(b) and a == b)


def _num(v: Any) -> Decimal | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int | float):
        return Decimal(str(v))
    if isinstance(v, str) and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", v):
        return Decimal(v)
    return None


def matches(expr: str, props: dict[str, Any]) -> bool:
    """An independent reading of the documented filter semantics."""
    f = parse_text(expr)
    present, v = f.property in props, props.get(f.property)

    def eq(x: Any) -> bool:
        return (present and v is not None and (_json_eq(v, x) or _text(v) == _text(x))) or (
            present and v is None and x is None
        )

    if f.op == "eq":
        return eq(f.value)
    if f.op == "neq":
        return not eq(f.value)
    if f.op == "in":
        assert isinstance(f.value, list)
        return any(eq(x) for x in f.value)
    if f.op == "contains":
        t = _text(v) if present else None
        return t is not None and str(f.value).lower() in t.lower()
    if f.op == "exists":
        return present
    if f.op == "not_exists":
        return not present
    n = _num(v) if present else None
    if n is None:
        return False
    target = Decimal(str(f.value))
    return {"gt": n > target, "gte": n >= target, "lt": n < target, "lte": n <= target}[f.op]


FILTERS = [
    ["plan = pro"], ["plan != pro"], ["plan = PRO"], ["plan ~ pro"], ['plan = "Pro Max"'], ["plan in [pro, team]"],
    ["plan in pro, free"], ["coupon exists"], ["coupon not exists"], ["amount > 100"], ["amount >= 42"],
    ["amount < 0"], ["amount <= 7.5"], ["amount = 42"], ["amount = true"], ["zip = 75001"], ["zip != 75001"],
    ["path ~ /pricing"], ["plan = pro", "amount > 10", "path exists"], ["amount = null"],
]  # fmt: skip


@pytest.mark.parametrize("filters", FILTERS, ids=[" & ".join(f) for f in FILTERS])
async def test_property_filters_match_their_documented_meaning(data: Data, filters: list[str]) -> None:
    out = await trends(
        data,
        {
            "events": NAMES,
            "filters": filters,
            "interval": "month",
            "start": "2026-10-01",
            "end": "2026-11-19",
        },
    )
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    expected: dict[str, int] = defaultdict(int)
    for name, ts, _, props, _ in data.events:
        if s <= ts < e and all(matches(f, props) for f in filters):
            expected[name] += 1
    assert {x["event"]: x["total"] for x in out["series"] if x["total"]} == dict(expected)
    assert out["query"]["filters"] == [parse_text(f).text() for f in filters]
    # Filters on rolled-up keys only are sums of the property rollup; any other key reads events.
    rolled = {parse_text(f).property for f in filters} <= ROLLUP_PROPERTIES
    assert out["computed_from"] == ("rollup" if rolled else "raw")
    assert "filters: " + ", ".join(out["query"]["filters"]) in out["text"]


@pytest.mark.parametrize("measure", ["count", "unique_clients"])
async def test_breakdown_top_n_and_other_equal_naive_sql(data: Data, db: Database, measure: str) -> None:
    out = await trends(
        data,
        {"events": ["page_view"], "measure": measure, "breakdown": "plan", "breakdown_limit": 3,
         "interval": "week", "start": "2026-10-01", "end": "2026-11-19", "time_zone": "Europe/Paris"},
    )  # fmt: skip
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    groups: dict[str | None, list[str | None]] = defaultdict(list)
    for name, ts, cid, props, _ in data.events:
        if name == "page_view" and s <= ts < e and (measure == "count" or cid is not None):
            groups[props.get("plan")].append(cid)

    def measured(clients: list[str | None]) -> int:
        return len(clients) if measure == "count" else len(set(clients))

    ranked = sorted(groups, key=lambda v: (-measured(groups[v]), v is None, v or ""))
    top = ranked[:3]
    rest = [c for v in ranked[3:] for c in groups[v]]
    series = out["series"]
    assert [(x["untrusted_breakdown_value"], x["total"], x["is_other"]) for x in series] == [
        *((v, measured(groups[v]), False) for v in top),
        (None, measured(rest), True),
    ]
    (naive_total,) = (
        await sql(
            db,
            "SELECT count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid) AND name = 'page_view'"
            " AND ts >= :s AND ts < :e",
            t=data.org_id,
            s=s,
            e=e,
        )
    )[0]
    if measure == "count":
        assert sum(x["total"] for x in series) == naive_total
    assert all(len(x["values"]) == len(out["buckets"]) for x in series)
    if measure == "count":
        assert all(sum(x["values"]) == x["total"] for x in series)


async def test_member_breakdown_for_owners_and_admins_only(data: Data, db: Database) -> None:
    body = {
        "events": NAMES,
        "breakdown": "$member",
        "start": "2026-10-01",
        "end": "2026-11-19",
        "interval": "week",
    }
    by_owner = await trends(data, body)
    by_admin = await trends(data, body, who=data.admin)
    assert by_owner["series"] == by_admin["series"] and by_owner["computed_from"] == "rollup"
    per_member: defaultdict[tuple[str, str], int] = defaultdict(int)
    for name, ts, _, _, pid in data.events:
        if START <= ts < dt.datetime(2026, 11, 20, tzinfo=UTC):
            per_member[(name, pid)] += 1
    got = {(x["event"], x["member"]["id"]): x["total"] for x in by_owner["series"]}
    assert got == dict(per_member)
    slugs = {x["member"]["slug"] for x in by_owner["series"]}
    assert slugs == {data.owner.slug, data.admin.slug, data.member.slug}
    refused = await data.client.post("/v1/analytics/trends", json=body, headers=data.member.h(org=data.org))
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_role"
    # Members still see the org's totals.
    totals = await trends(data, {k: v for k, v in body.items() if k != "breakdown"}, who=data.member)
    assert {x["event"]: x["total"] for x in totals["series"]} == {
        n: sum(v for (name, _), v in per_member.items() if name == n) for n in NAMES
    }
    # The rollup and the raw events agree on the per-member split, edges included.
    async with caller(db, data.owner, data.org) as (ctx, uow):
        rng = resolve_range(
            zone("Europe/Paris"), period=None, start="2026-10-03T10:10:10Z", end="2026-11-11T11:11:11Z",
            now=dt.datetime.now(UTC),
        )  # fmt: skip
        th = bucket_starts(rng, "day")
        spec = counting.Spec(ctx.tenant_id, NAMES, "count", [], "$member", 2)
        raw = await counting.compute(uow, spec, rng, th, use_rollup=False)
        rolled = await counting.compute(uow, spec, rng, th)
    assert rolled.path == "rollup+raw" and raw.values == rolled.values and raw.totals == rolled.totals


async def test_compare_with_the_previous_period(data: Data, db: Database) -> None:
    out = await trends(
        data,
        {"events": ["page_view"], "interval": "day", "start": "2026-11-01", "end": "2026-11-14", "compare": True,
         "time_zone": "Europe/Paris", "breakdown": "plan", "breakdown_limit": 2},
    )  # fmt: skip
    prev = out["previous"]
    assert prev["range"]["end"] == out["query"]["range"]["start"]
    ps = dt.datetime.fromisoformat(prev["range"]["start"])
    pe = dt.datetime.fromisoformat(prev["range"]["end"])
    assert pe - ps == dt.datetime.fromisoformat(out["query"]["range"]["end"]) - pe
    rows = await sql(
        db,
        "SELECT properties ->> 'plan', count(*) FROM analytics.events WHERE tenant_id = CAST(:t AS uuid)"
        " AND name = 'page_view' AND ts >= :s AND ts < :e GROUP BY 1",
        t=data.org_id,
        s=ps,
        e=pe,
    )
    top = [x["untrusted_breakdown_value"] for x in out["series"] if not x["is_other"]]
    expected = {v: n for v, n in rows if v in top}
    expected_other = sum(n for v, n in rows if v not in top)
    got = {x["untrusted_breakdown_value"]: x["total"] for x in prev["series"] if not x["is_other"]}
    assert got == expected
    assert [x["total"] for x in prev["series"] if x["is_other"]] == (
        [expected_other] if expected_other else []
    )
    assert "previous period" in out["text"] or out["query"]["breakdown"]


async def test_personal_and_org_totals_stay_apart(data: Data) -> None:
    body = {"events": ["page_view"], "start": "2026-10-01", "end": "2026-11-19", "breakdown": "plan"}
    personal = await trends(data, body, org=None)
    assert [(x["untrusted_breakdown_value"], x["total"]) for x in personal["series"]] == [("pro", 1)]
    assert personal["context"] == {"kind": "personal", "org": None, "role": None}
    outsider = await trends(data, body, who=data.outsider, org=None)
    assert [(x["untrusted_breakdown_value"], x["total"]) for x in outsider["series"]] == [("x", 1)]
    org = await trends(data, body)
    assert "x" not in {x["untrusted_breakdown_value"] for x in org["series"]}
    assert org["context"]["kind"] == "org" and org["context"]["org"] == data.org
    foreign = await data.client.post("/v1/analytics/trends", json=body, headers=data.outsider.h(org=data.org))
    assert foreign.status_code == 403 and foreign.json()["code"] == "not_a_member"


def oracle_funnel(
    events: list[tuple[str, dt.datetime, str | None, dict[str, Any], str]],
    steps: list[tuple[str, list[str]]],
    s: dt.datetime,
    e: dt.datetime,
    window: dt.timedelta,
) -> tuple[list[int], list[float | None]]:
    per_client: dict[str, list[tuple[dt.datetime, str, dict[str, Any]]]] = defaultdict(list)
    for name, ts, cid, props, _ in events:
        if cid is not None:
            per_client[cid].append((ts, name, props))
    counts = [0] * len(steps)
    deltas: list[list[float]] = [[] for _ in steps]

    def hits(evs: list[tuple[dt.datetime, str, dict[str, Any]]], k: int) -> list[dt.datetime]:
        name, filters = steps[k]
        return sorted(t for t, n, p in evs if n == name and all(matches(f, p) for f in filters))

    for evs in per_client.values():
        firsts = [t for t in hits(evs, 0) if s <= t < e]
        if not firsts:
            continue
        times = [firsts[0]]
        counts[0] += 1
        for k in range(1, len(steps)):
            strict = steps[k][0] == steps[k - 1][0]
            nxt = [
                t
                for t in hits(evs, k)
                if (t > times[-1] if strict else t >= times[-1]) and t <= times[0] + window
            ]
            if not nxt:
                break
            times.append(nxt[0])
            counts[k] += 1
            deltas[k].append((times[k] - times[0]).total_seconds())
    return counts, [statistics.median(d) if d else None for d in deltas]


FUNNELS = [
    (["page_view", "signup", "purchase"], "14d"),
    (["page_view where path ~ /pricing", "purchase where amount >= 10"], "3d"),
    (["signup", "page_view", "signup"], "30d"),
    (["page_view", "page_view where plan = pro"], "2h"),
]


@pytest.mark.parametrize(("steps", "window"), FUNNELS)
async def test_funnel_equals_naive_sql_and_an_independent_reading(
    data: Data, db: Database, steps: list[str], window: str
) -> None:
    r = await data.client.post(
        "/v1/analytics/funnel",
        json={
            "steps": steps,
            "window": window,
            "start": "2026-10-05",
            "end": "2026-11-01",
            "time_zone": "Europe/Paris",
        },
        headers=data.owner.h(org=data.org),
    )
    assert r.status_code == 200, r.text
    out = r.json()
    s = dt.datetime.fromisoformat(out["query"]["range"]["start"])
    e = dt.datetime.fromisoformat(out["query"]["range"]["end"])
    parsed = []
    for step in steps:
        name, _, rest = step.partition(" where ")
        parsed.append((name, [x.strip() for x in rest.split(" and ")] if rest else []))
    seconds = out["query"]["window_seconds"]
    counts, medians = oracle_funnel(data.events, parsed, s, e, dt.timedelta(seconds=seconds))
    assert [x["clients"] for x in out["steps"]] == counts
    assert counts[0] > 0
    for k, x in enumerate(out["steps"][1:], start=1):
        assert (
            x["median_seconds_from_start"] == pytest.approx(medians[k])
            if medians[k] is not None
            else x["median_seconds_from_start"] is None
        )
        assert x["conversion_from_previous"] == (counts[k] / counts[k - 1] if counts[k - 1] else None)
    assert out["conversion"] == counts[-1] / counts[0]
    if all(not f for _, f in parsed) and len(parsed) == 3:
        # Naive SQL: first entry per client, then correlated lookups on the whole table.
        naive = await sql(
            db,
            """
            WITH a AS (SELECT client_id, min(ts) AS t1 FROM analytics.events
                        WHERE tenant_id = CAST(:t AS uuid) AND name = :n1 AND client_id IS NOT NULL
                          AND ts >= :s AND ts < :e GROUP BY client_id),
                 b AS (SELECT a.*, (SELECT min(ts) FROM analytics.events x WHERE x.tenant_id = CAST(:t AS uuid)
                          AND x.name = :n2 AND x.client_id = a.client_id AND x.ts >= a.t1
                          AND x.ts <= a.t1 + make_interval(secs => :w)) AS t2 FROM a),
                 c AS (SELECT b.*, (SELECT min(ts) FROM analytics.events x WHERE x.tenant_id = CAST(:t AS uuid)
                          AND x.name = :n3 AND x.client_id = b.client_id
                          AND (x.ts > b.t2 OR (x.ts = b.t2 AND :n3 <> :n2))
                          AND x.ts <= b.t1 + make_interval(secs => :w)) AS t3 FROM b WHERE t2 IS NOT NULL)
            SELECT (SELECT count(*) FROM a), (SELECT count(*) FROM b WHERE t2 IS NOT NULL),
                   (SELECT count(*) FROM c WHERE t3 IS NOT NULL)
            """,
            t=data.org_id, n1=parsed[0][0], n2=parsed[1][0], n3=parsed[2][0], s=s, e=e, w=seconds,
        )  # fmt: skip
        assert list(naive[0]) == counts
    assert out["text"].startswith("Funnel ") and window in out["text"]


async def test_summary_for_an_org_its_members_and_a_person(client: httpx.AsyncClient, db: Database) -> None:
    owner, mate, member = await signup(client), await signup(client), await signup(client)
    org = await make_org(client, owner)
    oid = await org_id(client, owner, org)
    for who, role in ((mate, "admin"), (member, "member")):
        await join_org(client, org, owner, who, role)
    paris = ZoneInfo("Europe/Paris")

    def at(day: int, hh: int, mm: int = 0) -> dt.datetime:
        return dt.datetime(2026, 11, day, hh, mm, tzinfo=paris).astimezone(UTC)

    rec, sent = "messaging/message.received", "messaging/message.sent"
    conf, canc, comp = (
        "bookings/booking.confirmed",
        "bookings/booking.cancelled",
        "bookings/booking.completed",
    )
    await put(db, owner.id, oid, [
        (rec, at(10, 10), "c1", {"thread_id": "T1"}), (rec, at(10, 10, 5), "c1", {"thread_id": "T1"}),
        (sent, at(10, 10, 30), "c1", {"thread_id": "T1"}),
        (rec, at(10, 12), "c2", {"thread_id": "T2"}), (sent, at(10, 12, 10), "c2", {"thread_id": "T2"}),
        (sent, at(10, 8), "c3", {"thread_id": "T3"}), (rec, at(10, 9), "c3", {"thread_id": "T3"}),
        (rec, at(11, 13), "c4", {"thread_id": "T4"}),
        (conf, at(10, 10, 45), "c1", {"amount": 80, "currency": "EUR"}),
        (conf, at(11, 10, 15), "c2", {"amount": "20.5", "currency": "EUR"}),
        (canc, at(11, 16), "c1", {"amount": 80, "currency": "EUR"}),
        (comp, at(11, 17), "c1", {"amount": 80, "currency": "EUR"}),
        ("bookings/booking.requested", at(10, 10, 20), "c1", {}),
        ("bookings/booking.no_show", at(11, 18), "c5", {}),
        (conf, at(9, 10), "c9", {"amount": 999, "currency": "EUR"}),  # the previous period
        (rec, at(13, 10), "c9", {"thread_id": "T9"}),  # after the range
    ])  # fmt: skip
    await put(db, mate.id, oid, [
        (sent, at(11, 15), "c4", {"thread_id": "T4"}),
        (conf, at(11, 10, 40), "c6", {"amount": 100, "currency": "USD"}),
        ("bookings/booking.requested", at(11, 10, 50), "c6", {}),
    ])  # fmt: skip
    await put(db, owner.id, None, [(conf, at(10, 9), "p1", {"amount": 5, "currency": "EUR"})])
    params = {"start": "2026-11-10", "end": "2026-11-11", "time_zone": "Europe/Paris"}
    out = (await client.get("/v1/analytics/summary", params=params, headers=owner.h(org=org))).json()
    assert out["range"] == {
        "start": "2026-11-10T00:00:00+01:00", "end": "2026-11-12T00:00:00+01:00", "time_zone": "Europe/Paris",
        "period": None,
    }  # fmt: skip
    assert out["bookings"] == {"requested": 2, "confirmed": 3, "cancelled": 1, "completed": 1, "no_show": 1}
    assert out["revenue"] == [
        {"currency": "EUR", "booked": "100.50", "completed": "80.00", "cancelled": "80.00"},
        {"currency": "USD", "booked": "100.00", "completed": "0.00", "cancelled": "0.00"},
    ]
    assert out["messages"] == {"received": 5, "sent": 4}
    # T1: 30 min, T2: 10 min, T4: 2 h, T3 unanswered (its reply came before the question).
    assert out["first_response"] == {"median_seconds": 1800.0, "conversations": 4, "answered": 3}
    # Activity (received, requested, confirmed) per local hour: 7 at 10 h.
    assert out["busiest_hours"][0] == {"hour": 10, "events": 7}
    assert out["previous"]["bookings"]["confirmed"] == 1
    assert out["previous"]["revenue"] == [
        {"currency": "EUR", "booked": "999.00", "completed": "0.00", "cancelled": "0.00"}
    ]
    members = {x["member"]["slug"]: x for x in out["members"]}
    assert set(members) == {owner.slug, mate.slug}
    assert members[mate.slug]["bookings_confirmed"] == 1 and members[mate.slug]["messages_sent"] == 1
    assert members[mate.slug]["revenue"] == [
        {"currency": "USD", "booked": "100.00", "completed": "0.00", "cancelled": "0.00"}
    ]
    assert members[owner.slug]["messages_received"] == 5
    assert "3 bookings confirmed (1 the period before)" in out["text"] and "Europe/Paris" in out["text"]
    assert "median first response 30 min" in out["text"]
    as_member = (await client.get("/v1/analytics/summary", params=params, headers=member.h(org=org))).json()
    assert as_member["members"] is None and as_member["bookings"] == out["bookings"]
    personal = (await client.get("/v1/analytics/summary", params=params, headers=owner.h())).json()
    assert personal["bookings"]["confirmed"] == 1 and personal["members"] is None
    assert personal["revenue"] == [
        {"currency": "EUR", "booked": "5.00", "completed": "0.00", "cancelled": "0.00"}
    ]


async def test_revenue_is_exact_and_written_with_its_currency_s_decimals(
    client: httpx.AsyncClient, db: Database
) -> None:
    """Sums are decimal, never floats (0.10 + 0.20 EUR is 0.30, not 0.30000000000000004), and
    each currency keeps its own decimals: yen are whole, dinars have three."""
    owner = await signup(client)
    conf = "bookings/booking.confirmed"
    day = dt.datetime(2026, 11, 10, 12, tzinfo=UTC)
    await put(db, owner.id, None, [
        (conf, day, "c1", {"amount": 0.1, "currency": "EUR"}), (conf, day, "c2", {"amount": "0.2", "currency": "EUR"}),
        (conf, day, "c3", {"amount": 1500, "currency": "JPY"}), (conf, day, "c4", {"amount": 1.25, "currency": "KWD"}),
    ])  # fmt: skip
    params = {"start": "2026-11-10", "end": "2026-11-10", "time_zone": "UTC"}
    out = (await client.get("/v1/analytics/summary", params=params, headers=owner.h())).json()
    assert {r["currency"]: r["booked"] for r in out["revenue"]} == {
        "EUR": "0.30",
        "JPY": "1500",
        "KWD": "1.250",
    }
    assert out["revenue"][0]["completed"] == "0.00" and "0.30 EUR booked" in out["text"]


@pytest.mark.parametrize(
    ("path", "body", "code"),
    [
        ("trends", {"events": ["page_view"], "time_zone": "Mars/Olympus"}, "invalid_time_zone"),
        ("trends", {"events": ["page_view"], "start": "2026-13-01"}, "invalid_range"),
        ("trends", {"events": ["page_view"], "start": "2026-11-02", "end": "2026-11-01"}, "invalid_range"),
        ("trends", {"events": ["page_view"], "start": "1999-01-01", "end": "1999-02-01"}, "invalid_range"),
        (
            "trends",
            {"events": ["page_view"], "interval": "hour", "period": "last_365_days"},
            "too_many_buckets",
        ),
        ("trends", {"events": ["page_view"], "filters": ["plan"]}, "invalid_filter"),
        ("trends", {"events": ["page_view"], "filters": ["amount > lots"]}, "invalid_filter"),
        (
            "trends",
            {"events": ["page_view"], "filters": [{"property": "a", "op": "in", "value": 3}]},
            "invalid_filter",
        ),
        ("trends", {"events": ["page_view"], "breakdown": "$nope"}, "invalid_breakdown"),
        ("trends", {"events": ["page view"]}, "invalid_event_name"),
        ("trends", {"events": ["a", "a"]}, "invalid_event_name"),
        ("trends", {"events": []}, "validation_failed"),
        ("trends", {"events": ["a"], "measure": "sum"}, "validation_failed"),
        ("funnel", {"steps": ["a", "b"], "window": "forever"}, "invalid_window"),
        ("funnel", {"steps": ["a", "b"], "window": "200d"}, "invalid_window"),
        ("funnel", {"steps": ["a", "a"]}, "invalid_funnel"),
        ("funnel", {"steps": ["a"]}, "validation_failed"),
        ("funnel", {"steps": ["a where plan ~"]}, "validation_failed"),
        ("funnel", {"steps": ["a where plan ~", "b"]}, "invalid_filter"),
    ],
)
async def test_bad_queries_are_clear_422s(
    client: httpx.AsyncClient, path: str, body: dict[str, Any], code: str
) -> None:
    a = await signup(client)
    r = await client.post(f"/v1/analytics/{path}", json=body, headers=a.h())
    assert r.status_code == 422, r.text
    problem = r.json()
    assert problem["code"] == code and problem["hint"], problem
    assert "select" not in r.text.lower() and "analytics.events" not in r.text
