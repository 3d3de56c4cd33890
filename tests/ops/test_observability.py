"""Metrics and probes (docs/observability.md): /metrics after real traffic names routes by their
template and has every metric a dashboard panel queries; it is refused without a platform
admin's credential, or served only on the separate address; /health/live and /health/ready."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import promql_parser
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from core import ports
from core.config import Settings
from core.metrics import DatabaseGauges
from core.relay import Relay
from core.uow import Database
from servers.app import create_app
from tests.conftest import running, signup
from tests.ops.test_infrastructure import COMPOSE, compose, interpolate, known_vars
from tests.support.billing import grant, make_admin
from tests.support.limiter_clock import limiter_clock_at_window_start
from tests.support.serving import free_port

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


def alert_exprs() -> list[str]:
    rules = yaml.safe_load(
        (ROOT / "infrastructure" / "observability" / "prometheus" / "rules.yml").read_text()
    )
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


async def scrape(client: httpx.AsyncClient, headers: dict[str, str]) -> Samples:
    r = await client.get("/metrics", headers=headers)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"].startswith("text/plain")
    return parse(r.text)


async def call_whoami(app: Any, token: str) -> None:

    from tests.support.mcp import mcp_client

    async with mcp_client(app, token) as c:
        assert not (await c.call_tool("whoami", {})).is_error
        assert (await c.call_tool("whoami", {"org": ["not", "a", "slug"]})).is_error


async def refuse_one(db: Database) -> None:
    """A request over a tight per-address limit, on an app of its own (the tests' app allows
    everything): counted by policy in the same process-wide metrics."""
    tight = db.settings.model_copy(update={"rate_limit_per_ip": "1/minute"})
    other = create_app(tight, db=db, run_relay=False)
    transport = httpx.ASGITransport(app=other)
    # Both requests in one window of the limiter, whatever second the test runs at.
    with limiter_clock_at_window_start():
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
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

    app.state.metric_gauges.expire()  # the database gauges are cached for a few seconds
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
        ("atlilith_mcp_tool_calls_total", {"tool": "whoami", "outcome": "invalid_arguments"}),
        ("atlilith_mcp_tool_duration_seconds_count", {"tool": "whoami"}),
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
    for board, queries in [*exprs.items(), ("prometheus/rules.yml", alert_exprs())]:
        for expr in queries:
            for metric in METRIC_NAME.findall(expr):
                assert metric in names, f"{board}: {metric} (in {expr!r}) is not in the scrape"


async def test_database_gauges_are_read_at_most_once_per_cache_period(db: Database) -> None:
    gauges = DatabaseGauges(db, max_age=60)
    first, again = await asyncio.gather(gauges.refresh(), gauges.refresh())
    assert first is again and first.up  # two scrapes at once, one read
    assert await gauges.refresh() is first
    gauges.expire()
    fresh = await gauges.refresh()
    assert fresh is not first and fresh.taken > first.taken


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


# --- dashboards and the `observability` compose profile, checked statically ----------------------

OBS = ROOT / "infrastructure" / "observability"
PROFILE = {"otel-collector", "tempo", "prometheus", "grafana"}


def load_yaml(path: Path) -> dict[str, Any]:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), path
    return data


def as_grafana_sends(expr: str) -> str:
    return expr.replace("$__rate_interval", "1m").replace("${component}", "bookings")


def test_dashboards_are_grafana_dashboards_on_the_provisioned_data_sources() -> None:
    sources = load_yaml(OBS / "grafana" / "provisioning" / "datasources" / "datasources.yaml")["datasources"]
    uids = {s["type"]: s["uid"] for s in sources}
    assert uids == {"prometheus": "prometheus", "tempo": "tempo"}
    provider = load_yaml(OBS / "grafana" / "provisioning" / "dashboards" / "dashboards.yaml")["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"] == "/var/lib/grafana/dashboards"
    seen: set[str] = set()
    for path in sorted(DASHBOARDS.glob("*.json")):
        board = json.loads(path.read_text())
        assert board["uid"] not in seen and board["title"].startswith("Atlilith / "), path.name
        seen.add(board["uid"])
        variables = {v["name"] for v in board["templating"]["list"]}
        for panel in board["panels"]:
            assert panel["title"] and set(panel["gridPos"]) == {"h", "w", "x", "y"}, (path.name, panel)
            assert panel["datasource"]["uid"] in uids.values() and panel["targets"], (
                path.name,
                panel["title"],
            )
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "prometheus" and METRIC_NAME.search(target["expr"])
                # Valid PromQL once Grafana has put in its variables (the parser Prometheus's
                # grammar is ported to; a typo here would only show as an empty panel).
                promql_parser.parse(as_grafana_sends(target["expr"]))
                used = set(re.findall(r"\$\{(\w+)\}|\$(?!__)(\w+)", target["expr"]))
                assert {a or b for a, b in used} <= variables, (path.name, target["expr"])
    # platform overview, per component, peers and integrations, costs and credits, event flow
    assert seen == {
        "atlilith-overview",
        "atlilith-components",
        "atlilith-peers",
        "atlilith-costs",
        "atlilith-events",
    }


def test_alert_rules_are_valid_promql_with_a_summary() -> None:
    rules = load_yaml(OBS / "prometheus" / "rules.yml")["groups"][0]["rules"]
    assert {r["alert"] for r in rules} >= {
        "AtlilithRelayLagging",
        "AtlilithDeadLetters",
        "AtlilithServerErrors",
    }
    for rule in rules:
        promql_parser.parse(rule["expr"])
        assert rule["annotations"]["summary"] and rule["labels"]["severity"] in {"page", "ticket"}
    assert load_yaml(OBS / "prometheus" / "prometheus.yml")["rule_files"] == ["/etc/prometheus/rules.yml"]


def test_collector_tempo_and_prometheus_configs_agree_with_the_port_registry() -> None:
    registry = ports.load()
    collector = load_yaml(OBS / "otel-collector" / "config.yaml")
    otlp = collector["receivers"]["otlp"]["protocols"]
    assert otlp["grpc"]["endpoint"] == f"0.0.0.0:{registry['otlp_grpc'].container}"
    assert otlp["http"]["endpoint"] == f"0.0.0.0:{registry['otlp_http'].container}"
    assert collector["exporters"]["otlp/tempo"]["endpoint"] == f"tempo:{registry['otlp_grpc'].container}"
    traces = collector["service"]["pipelines"]["traces"]
    assert traces["receivers"] == ["otlp"] and traces["exporters"] == ["otlp/tempo"]
    assert set(traces["processors"]) <= set(collector["processors"])
    assert collector["extensions"]["health_check"]["endpoint"].endswith(
        f":{registry['otel_health'].container}"
    )
    tempo = load_yaml(OBS / "tempo" / "tempo.yaml")
    assert tempo["server"]["http_listen_port"] == registry["tempo"].container
    assert tempo["distributor"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(
        f":{registry['otlp_grpc'].container}"
    )
    prometheus = load_yaml(OBS / "prometheus" / "prometheus.yml")
    jobs = {job["job_name"]: job for job in prometheus["scrape_configs"]}
    assert jobs["atlilith"]["metrics_path"] == "/metrics"
    assert jobs["atlilith"]["static_configs"][0]["targets"] == [f"app:{registry['app_metrics'].container}"]
    assert jobs["otel-collector"]["static_configs"][0]["targets"] == [
        f"otel-collector:{registry['otel_metrics'].container}"
    ]
    sources = load_yaml(OBS / "grafana" / "provisioning" / "datasources" / "datasources.yaml")["datasources"]
    urls = {s["uid"]: s["url"] for s in sources}
    assert urls == {
        "prometheus": f"http://prometheus:{registry['prometheus'].container}",
        "tempo": f"http://tempo:{registry['tempo'].container}",
    }


def test_the_observability_profile_starts_beside_the_app_with_files_that_exist() -> None:
    data = compose()
    services = data["services"]
    assert set(services) >= PROFILE
    for name in PROFILE:
        assert services[name]["profiles"] == ["observability"], name
        for volume in services[name].get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name} mounts missing {source}"
            else:
                assert source in data["volumes"], f"{name}: undeclared volume {source}"
    for name in ("app", "postgres", "caddy"):
        assert "profiles" not in services[name]  # the profile adds to the stack, never replaces it
    env = known_vars()
    registry = ports.load()
    app_env = {k: interpolate(str(v), env) for k, v in services["app"]["environment"].items()}
    assert (
        app_env["OTEL_EXPORTER_OTLP_ENDPOINT"] == f"http://otel-collector:{registry['otlp_http'].container}"
    )
    assert app_env["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    # The app's metrics listener is what Prometheus scrapes, and the settings accept it.
    assert app_env["ATLILITH_METRICS_ADDRESS"] == f"0.0.0.0:{registry['app_metrics'].container}"
    address = Settings(metrics_address=app_env["ATLILITH_METRICS_ADDRESS"], database_url="postgresql://x@y/z")
    assert address.metrics_address == app_env["ATLILITH_METRICS_ADDRESS"]
    grafana = services["grafana"]
    assert grafana["depends_on"]["prometheus"]["condition"] == "service_healthy"
    mounts = {v.split(":")[1] for v in grafana["volumes"]}
    assert {"/etc/grafana/provisioning", "/var/lib/grafana/dashboards"} <= mounts


def test_a_malformed_metrics_address_is_refused_at_start() -> None:
    for bad in ("9464", "host:", ":9464", "host:99999", "host:port"):
        with pytest.raises(ValueError, match="host:port"):
            Settings(metrics_address=bad, database_url="postgresql://x@y/z")


@pytest.fixture
def logging_restored() -> Iterator[None]:
    """`configure_logging` sets process-wide state: put the suite's back afterwards."""
    import logging

    import structlog

    saved, root = structlog.get_config(), logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.configure(**saved)
        root.handlers[:] = handlers
        root.setLevel(level)


def test_a_json_log_line_reads_as_json_dumps_writes_it(
    logging_restored: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """One JSON object per line, as `json.dumps` spells it (the encoder is built once, not per
    line); values JSON cannot hold are written as their repr; the span's ids are on it."""
    from core.observability import configure_logging, get_logger, trace

    class Opaque:
        def __repr__(self) -> str:
            return "<opaque ü>"

    configure_logging(Settings(log_level="info", log_format="json"))
    log = get_logger("atlilith.test")
    with trace(name="GET /v1/me", component="me") as trace_id:
        log.info("request", method="GET", path="/v1/me", status=200, ms=1.5, db_statements=2, odd=Opaque())
        log.debug("not_at_info")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    entry = json.loads(lines[0])
    assert lines[0] == json.dumps(entry)
    assert {k: entry[k] for k in ("event", "level", "method", "path", "status", "ms", "db_statements")} == {
        "event": "request",
        "level": "info",
        "method": "GET",
        "path": "/v1/me",
        "status": 200,
        "ms": 1.5,
        "db_statements": 2,
    }
    assert entry["odd"] == "<opaque ü>" and entry["component"] == "me"
    assert entry["trace_id"] == trace_id and re.fullmatch(r"[0-9a-f]{16}", entry["span_id"])
    assert entry["timestamp"].endswith("Z")
