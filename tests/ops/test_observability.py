"""Metrics and probes (docs/observability.md): /metrics after real traffic names routes by their
template and has every metric a dashboard panel queries; it is refused without a platform
admin's credential, or served only on the separate address; /health/live and /health/ready."""

from __future__ import annotations

import json
import re
import uuid
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from core.relay import Relay
from core.uow import Database
from servers.app import create_app
from tests.conftest import running, signup
from tests.support.billing import free_port, grant, make_admin

ROOT = Path(__file__).resolve().parents[2]
DASHBOARDS = ROOT / "infrastructure" / "observability" / "grafana" / "dashboards"
METRIC_NAME = re.compile(r"\batlilith_[a-z0-9_]+\b")
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(exposition: str) -> Samples:
    """Every sample of a scrape, keyed by name and labels (prometheus_client's own parser)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(exposition)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def dashboard_exprs() -> dict[str, list[str]]:
    """Each dashboard file's PromQL expressions, from every panel's targets."""
    found: dict[str, list[str]] = {}
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        found[path.name] = [t["expr"] for p in board["panels"] for t in p.get("targets", []) if "expr" in t]
    return found


async def scrape(client: httpx.AsyncClient, headers: dict[str, str]) -> Samples:
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def call_whoami(app: Any, token: str) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    from tests.tools.test_mcp import http_client

    async with Client(
        streamable_http_client("http://testserver/mcp", http_client=http_client(app, token))
    ) as c:
        assert not (await c.call_tool("whoami", {})).is_error


async def refuse_one(db: Database) -> None:
    """A request over a tight per-address limit, on an app of its own (the tests' app allows
    everything): counted by policy in the same process-wide metrics."""
    tight = db.settings.model_copy(update={"rate_limit_per_ip": "1/minute"})
    other = create_app(tight, db=db, run_relay=False)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=other), base_url="http://testserver") as c:
        statuses = [(await c.get("/v1/meta")).status_code for _ in range(2)]
    assert statuses == [200, 429]


async def test_metrics_after_traffic_name_routes_by_template_and_cover_every_dashboard(
    client: httpx.AsyncClient, app: Any, db: Database
) -> None:
    import tests.support.billing  # noqa: F401  (registers the test actions)

    admin, a = await make_admin(client), await signup(client)
    before = await scrape(client, admin.h())
    await grant(client, admin, 10, person=a.slug)
    job = (await client.post("/v1/run/tests/metered", json={"input": {"credits": 1}}, headers=a.h())).json()
    await Relay(db).drain()  # the job runs; the grant's and the job's events reach their handlers
    done = await client.get(f"/v1/jobs/{job['job_id']}", headers=a.h())
    assert done.json()["status"] == "succeeded", done.text
    await call_whoami(app, a.token)
    await refuse_one(db)
    assert (await client.get(f"/v1/nothing-here/{uuid.uuid4()}")).status_code == 404

    after = await scrape(client, admin.h())
    by_template = {"method": "GET", "route": "/v1/jobs/{job_id}", "status": "200"}
    assert value(after, "atlilith_http_requests_total", **by_template) == (
        value(before, "atlilith_http_requests_total", **by_template) + 1
    )
    # No raw path (an id) ever becomes a label: an unknown path is one series.
    labels = {v for (_, pairs) in after for (_, v) in pairs}
    assert not any(job["job_id"] in v for v in labels)
    assert value(after, "atlilith_http_requests_total", method="GET", route="unmatched", status="404") >= 1
    for name, labels_ in [
        ("atlilith_mcp_tool_calls_total", {"tool": "whoami", "outcome": "ok"}),
        ("atlilith_rate_limit_refusals_total", {"policy": "ip"}),
        ("atlilith_outbox_relayed_total", {"mode": "dispatched"}),
    ]:
        assert value(after, name, **labels_) > value(before, name, **labels_), (name, labels_)
    assert value(after, "atlilith_http_requests_total", method="GET", route="/v1/meta", status="429") >= 1
    handled = [k for k in after if k[0] == "atlilith_handler_duration_seconds_count"]
    assert sum(after[k] for k in handled) > sum(before.get(k, 0.0) for k in handled)
    assert value(after, "atlilith_jobs", state="succeeded", executor="builtin") >= 1
    assert value(after, "atlilith_metrics_database_up") == 1
    assert value(after, "atlilith_db_pool_size", pool="app") == db.settings.db_pool_size

    names = {name for (name, _) in after}
    exprs = dashboard_exprs()
    assert len(exprs) == 5 and all(exprs.values()), exprs
    for board, queries in exprs.items():
        for expr in queries:
            for metric in METRIC_NAME.findall(expr):
                assert metric in names, f"{board}: {metric} (in {expr!r}) is not in the scrape"


async def test_metrics_refuse_anyone_but_a_platform_admin(client: httpx.AsyncClient) -> None:
    someone = await signup(client)
    anonymous = await client.get("/metrics")
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "missing_credential", anonymous.text
    refused = await client.get("/metrics", headers=someone.h())
    assert refused.status_code == 403 and refused.json()["code"] == "platform_admin_required"
    for r in (anonymous, refused):
        assert r.headers["content-type"] == "application/problem+json" and "atlilith_" not in r.text


async def test_metrics_on_a_separate_address_only(db: Database) -> None:
    port = free_port()
    settings = db.settings.model_copy(update={"metrics_address": f"127.0.0.1:{port}"})
    app = create_app(settings, db=db, run_relay=False)
    admin_token = None
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        admin_token = (await make_admin(c)).token
        on_main = await c.get("/metrics", headers={"Authorization": f"Bearer {admin_token}"})
        assert on_main.status_code == 404 and "atlilith_" not in on_main.text
        async with httpx.AsyncClient() as outside:
            r = await outside.get(f"http://127.0.0.1:{port}/metrics")
        assert r.status_code == 200
        samples = parse(r.text)
        assert value(samples, "atlilith_metrics_database_up") == 1
        assert ("atlilith_outbox_pending", frozenset()) in samples
    # Stopped with the app.
    async with httpx.AsyncClient() as outside:
        try:
            await outside.get(f"http://127.0.0.1:{port}/metrics", timeout=2)
            raise AssertionError("the metrics listener outlived the app")
        except httpx.ConnectError:
            pass


async def test_health_live_and_ready(client: httpx.AsyncClient, db: Database) -> None:
    await Relay(db).drain()
    live = await client.get("/health/live")
    assert live.status_code == 200 and live.json() == {"status": "ok"}
    ready = await client.get("/health/ready")
    assert ready.status_code == 200 and ready.json()["database"] == "ok", ready.text
    assert (await client.get("/health")).status_code == 200  # unchanged beside them

    # An event the relay has not moved for an hour: not ready, and the problem says why.
    async with db.system() as uow:
        await uow.session.execute(
            text(
                "INSERT INTO platform.outbox (id, name, data, trace_id, created_at, next_attempt_at)"
                " VALUES (:id, 'tests/metrics.lagging', '{}', 'lagging', now() - interval '1 hour',"
                " now() - interval '1 hour')"
            ),
            {"id": uuid.uuid4()},
        )
    lagging_app = create_app(db.settings.model_copy(update={"health_max_relay_lag_seconds": 60}), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=lagging_app), base_url="http://testserver"
    ) as c:
        lagging = await c.get("/health/ready")
        assert lagging.status_code == 503 and lagging.json()["code"] == "not_ready", lagging.text
        assert lagging.json()["check"] == "relay" and lagging.json()["hint"]
        assert (await c.get("/health/live")).status_code == 200
    await Relay(db).drain()
    caught_up = create_app(db.settings.model_copy(update={"health_max_relay_lag_seconds": 60}), db=db)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=caught_up), base_url="http://testserver"
    ) as c:
        assert (await c.get("/health/ready")).status_code == 200


async def test_ready_is_503_when_the_database_is_unreachable(db: Database) -> None:
    port = free_port()  # nothing listens there
    unreachable = f"postgresql+asyncpg://atlilith_app@127.0.0.1:{port}/nowhere"
    settings = db.settings.model_copy(
        update={
            "app_database_url": unreachable,
            "system_database_url": unreachable,
            "health_ready_timeout_seconds": 2.0,
        }
    )
    bad = create_app(settings, run_relay=False)  # its own Database, never started
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=bad), base_url="http://testserver"
        ) as c:
            assert (await c.get("/health/live")).status_code == 200
            r = await c.get("/health/ready")
            assert r.status_code == 503, r.text
            body = r.json()
            assert body["code"] == "not_ready" and body["check"] == "database" and body["hint"]
            assert r.headers["content-type"] == "application/problem+json"
            assert "nowhere" not in r.text and str(port) not in r.text  # no connection details
    finally:
        await bad.state.db.dispose()
