"""Rate limits (core.ratelimit, servers.ratelimit): small limits here, so that 429, its headers,
and the separation of credentials and addresses are proven; the rest of the suite runs with
limits far out of reach (tests/conftest.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from core.uow import Database
from servers.app import create_app
from tests.conftest import running, signup
from tests.support.limiter_clock import limiter_clock_at_window_start

HIGH = "1000000/minute"
MCP_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


@pytest.fixture(autouse=True)
def one_window() -> Iterator[None]:
    """Every request of a test counts in one window, whatever second the test runs at
    (tests/support/limiter_clock.py)."""
    with limiter_clock_at_window_start():
        yield


@pytest.fixture
def limited(db: Database) -> Any:
    """An app factory with the given limits (every other one far out of reach)."""

    def build(**limits: Any) -> Any:
        update = {
            "rate_limit_per_credential": HIGH,
            "rate_limit_per_ip": HIGH,
            "rate_limit_signin_per_ip": HIGH,
            "rate_limit_public_per_ip": HIGH,
            **limits,
        }
        return create_app(db.settings.model_copy(update=update), db=db, run_relay=False)

    return build


@pytest.fixture
async def tight(limited: Any) -> AsyncIterator[httpx.AsyncClient]:
    app = limited(rate_limit_per_credential="3/minute")
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        c.app = app  # type: ignore[attr-defined]
        yield c


def _messages(exc: BaseException) -> str:
    if isinstance(exc, BaseExceptionGroup):
        return " ".join(_messages(e) for e in exc.exceptions)
    return str(exc)


def _fields(value: str) -> dict[str, dict[str, int]]:
    """Parse a RateLimit / RateLimit-Policy list: {"name": {"q": 3, "w": 60}, ...}."""
    out: dict[str, dict[str, int]] = {}
    for member in value.split(","):
        name, *params = member.strip().split(";")
        out[name.strip('"')] = {k: int(v) for k, v in (p.split("=") for p in params)}
    return out


async def test_a_credential_over_its_limit_gets_429_with_the_rate_limit_fields(
    tight: httpx.AsyncClient,
) -> None:
    a = await signup(tight)
    seen = []
    for _ in range(3):
        r = await tight.get("/v1/me", headers=a.h())
        assert r.status_code == 200, r.text
        assert _fields(r.headers["RateLimit-Policy"])["credential"] == {"q": 3, "w": 60}
        seen.append(_fields(r.headers["RateLimit"])["credential"]["r"])
    assert seen == [2, 1, 0]

    refused = await tight.get("/v1/me", headers=a.h())
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/problem+json"
    body = refused.json()
    assert body["code"] == "rate_limited" and body["status"] == 429 and "Retry-After" in body["hint"]
    assert body["policy"] == "credential" and body["trace_id"]
    wait = int(refused.headers["Retry-After"])
    assert 1 <= wait <= 60 and body["retry_after"] == wait
    state = _fields(refused.headers["RateLimit"])["credential"]
    assert state["r"] == 0 and 1 <= state["t"] <= 60
    assert refused.headers["X-Trace-Id"] == body["trace_id"]


async def test_one_tenants_burst_does_not_limit_another(tight: httpx.AsyncClient) -> None:
    a, b = await signup(tight), await signup(tight)
    for _ in range(3):
        assert (await tight.get("/v1/me", headers=a.h())).status_code == 200
    assert (await tight.get("/v1/me", headers=a.h())).status_code == 429
    # Same address, another person: a full quota of their own.
    for _ in range(3):
        assert (await tight.get("/v1/me", headers=b.h())).status_code == 200
    # b's quota was b's own: a's is still spent.
    assert (await tight.get("/v1/me", headers=a.h())).status_code == 429


async def test_an_api_key_has_its_own_quota(limited: Any) -> None:
    app = limited(rate_limit_per_credential="4/minute")
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        a = await signup(c)
        key = (await c.post("/v1/api-keys", json={"name": "bot", "scopes": ["*"]}, headers=a.h())).json()
        for _ in range(3):
            assert (await c.get("/v1/me", headers=a.h())).status_code == 200
        assert (await c.get("/v1/me", headers=a.h())).status_code == 429
        for _ in range(4):
            assert (await c.get("/v1/me", headers=a.h(token=key["token"]))).status_code == 200
        assert (await c.get("/v1/me", headers=a.h(token=key["token"]))).status_code == 429


async def test_a_forged_token_cannot_spend_someone_elses_quota(tight: httpx.AsyncClient) -> None:
    a = await signup(tight)
    head, payload, _ = a.token.split(".")
    forged = f"{head}.{payload}.{'A' * 43}"  # a's subject, a signature that does not hold
    for _ in range(5):
        r = await tight.get("/v1/me", headers={"Authorization": f"Bearer {forged}"})
        assert r.status_code == 401 and "credential" not in r.headers["RateLimit-Policy"]
    assert (await tight.get("/v1/me", headers=a.h())).status_code == 200


async def test_mcp_over_http_is_refused_with_429_before_the_mcp_layer(tight: httpx.AsyncClient) -> None:
    app = tight.app  # type: ignore[attr-defined]
    a = await signup(tight)
    for _ in range(3):
        r = await tight.post("/mcp", json=MCP_LIST, headers={**a.h(), **MCP_ACCEPT})
        # Reaches the MCP layer (which answers as it would: no session was opened here).
        assert r.status_code != 429 and "credential" in r.headers["RateLimit"]
    refused = await tight.post("/mcp", json=MCP_LIST, headers={**a.h(), **MCP_ACCEPT})
    # On /mcp the refusal is a JSON-RPC error answering the request (as the SDK's own HTTP
    # errors are), with the same code, hint and fields as REST's problem.
    assert refused.status_code == 429 and refused.headers["content-type"] == "application/json"
    body = refused.json()
    assert body["id"] == 1 and body["error"]["data"]["code"] == "rate_limited"
    assert "Retry-After" in body["error"]["message"]
    assert int(refused.headers["Retry-After"]) >= 1 and "credential" in refused.headers["RateLimit"]

    # What the official Python client makes of it: the call fails with that message.
    http = httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app), base_url="http://testserver", headers=a.h()
    )
    with pytest.raises(BaseException) as failure:
        async with Client(streamable_http_client("http://testserver/mcp", http_client=http)) as c:
            await c.list_tools()
    assert "too many requests" in _messages(failure.value)


async def test_signin_is_limited_per_address_much_tighter(limited: Any) -> None:
    app = limited(rate_limit_signin_per_ip="3/minute", trusted_proxies=["127.0.0.1"])
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        a = await signup(c)  # from 127.0.0.1 itself (no X-Forwarded-For)
        attacker = {"X-Forwarded-For": "203.0.113.7"}
        wrong = {"login": a.slug, "password": "not-the-password"}
        for _ in range(3):
            assert (await c.post("/v1/auth/login", json=wrong, headers=attacker)).status_code == 401
        right = {"login": a.slug, "password": a.password}
        refused = await c.post("/v1/auth/login", json=right, headers=attacker)
        assert refused.status_code == 429 and refused.json()["policy"] == "signin"
        assert _fields(refused.headers["RateLimit-Policy"])["signin"] == {"q": 3, "w": 60}
        # Another address (through the same trusted proxy) signs in; the API is not "signin".
        ok = await c.post("/v1/auth/login", json=right, headers={"X-Forwarded-For": "203.0.113.8"})
        assert ok.status_code == 200 and "signin" in ok.headers["RateLimit-Policy"]
        me = await c.get("/v1/me", headers={**a.h(), **attacker})
        assert me.status_code == 200 and "signin" not in me.headers["RateLimit-Policy"]


async def test_x_forwarded_for_is_ignored_unless_the_peer_is_a_trusted_proxy(limited: Any) -> None:
    app = limited(rate_limit_signin_per_ip="2/minute")  # no trusted proxies: the default
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        wrong = {"login": "nobody-here", "password": "not-the-password"}
        for n in range(2):
            r = await c.post("/v1/auth/login", json=wrong, headers={"X-Forwarded-For": f"198.51.100.{n}"})
            assert r.status_code == 401
        # A new made-up address each time does not buy a new quota.
        r = await c.post("/v1/auth/login", json=wrong, headers={"X-Forwarded-For": "198.51.100.9"})
        assert r.status_code == 429


async def test_anonymous_requests_are_limited_per_address(limited: Any) -> None:
    app = limited(rate_limit_per_ip="2/minute")
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        for _ in range(2):
            assert (await c.get("/v1/registry")).status_code in {200, 401}
        r = await c.get("/v1/registry")
        assert r.status_code == 429 and r.json()["policy"] == "ip"
        assert (await c.get("/health")).status_code == 200  # probes are never limited


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "counted_as"),
    [
        ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),  # nobody trusted: the peer
        ("203.0.113.9", "198.51.100.1", ["10.0.0.0/8"], "203.0.113.9"),  # peer not a proxy
        ("10.0.0.2", "198.51.100.1", ["10.0.0.0/8"], "198.51.100.1"),
        # The client's own claims (left) are not believed past the first untrusted hop.
        ("10.0.0.2", "1.1.1.1, 198.51.100.1, 10.0.0.7", ["10.0.0.0/8"], "198.51.100.1"),
        ("10.0.0.2", "not-an-address", ["10.0.0.0/8"], "10.0.0.2"),
        ("2001:db8:1:2::5", None, [], "2001:db8:1:2::/64"),  # one subscriber's /64, one bucket
        ("::ffff:203.0.113.4", None, [], "203.0.113.4"),
    ],
)
def test_the_address_a_request_is_counted_under(
    peer: str, forwarded: str | None, trusted: list[str], counted_as: str
) -> None:
    from core.ratelimit import client_address

    networks = tuple(ipaddress.ip_network(t) for t in trusted)
    assert client_address(peer, forwarded, networks) == counted_as


async def test_the_in_memory_counters_start_no_thread_and_drop_expired_windows(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default storage counts in this process without a timer thread (starting one blocks
    the event loop), and still forgets the counters of clients that went away."""
    import threading
    from types import SimpleNamespace

    from core.ratelimit import RateLimits

    now = [1_000_000.5]
    clock = SimpleNamespace(time=lambda: now[0])
    for module in ("limits.storage.memory", "limits.strategies", "core.ratelimit"):
        monkeypatch.setattr(f"{module}.time", clock)
    settings = db.settings.model_copy(update={"rate_limit_per_ip": "5/second"})
    limits = RateLimits(settings, db.tokens)
    threads = threading.active_count()
    for _ in range(5):
        assert (await limits.check(address="198.51.100.7", authorization=None)).allowed
    refused = await limits.check(address="198.51.100.7", authorization=None)
    assert not refused.allowed and refused.refused is not None and refused.refused.policy.name == "ip"
    assert threading.active_count() <= threads
    storage = limits._memory
    assert storage is not None
    assert any("198.51.100.7" in key for key in storage.expirations)
    # Long after both windows ended, another client's request sweeps the first one's counters.
    now[0] += 10
    assert (await limits.check(address="198.51.100.8", authorization=None)).allowed
    assert not any("198.51.100.7" in key for key in storage.expirations)
    assert (await limits.check(address="198.51.100.7", authorization=None)).allowed


@pytest.mark.parametrize("rate", ["5/second", "3/minute", "7 per 10 seconds", "0/minute"])
def test_the_one_pass_hit_agrees_with_the_librarys_hit_and_window_stats(
    rate: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The in-memory limiter counts and reports in one pass; at every instant (across window
    boundaries, refusals and expiries) it answers as `limits`' strategy does with a hit then a
    window read on its own storage, and a look without counting as the strategy's `test`."""
    import math
    from types import SimpleNamespace

    from limits.storage import MemoryStorage
    from limits.strategies import SlidingWindowCounterRateLimiter

    from core.ratelimit import Policy, _LoopMemoryStorage, parse_rate

    now = [1_000_000.25]
    clock = SimpleNamespace(time=lambda: now[0])
    for module in ("limits.storage.memory", "limits.strategies", "core.ratelimit"):
        monkeypatch.setattr(f"{module}.time", clock)
    policy = Policy("ip", parse_rate(rate))
    ours = _LoopMemoryStorage()
    reference_storage = MemoryStorage()
    reference_storage.timer.cancel()
    reference = SlidingWindowCounterRateLimiter(reference_storage)
    # Seconds between requests: bursts inside a window, crossings, and gaps past expiry.
    steps = (0.0, 0.01, 0.02, 0.1, 0.3, 0.05, 0.9, 0.2, 1.7, 0.01, 2.5, 0.4, 7.0, 0.02, 30.0, 45.0, 130.0)
    for i, step in enumerate(steps * 3):
        now[0] += step
        identity = "198.51.100.7" if i % 4 else "2001:db8::/64"
        assert policy.key(identity) == policy.item.key_for(policy.name, identity)
        # A look without counting (a booking page's limit) answers as the strategy's `test`.
        would, left, _ = ours.hit_standing(policy.key(identity), policy.quota, policy.window, count=False)
        assert (would, left) == (
            reference.test(policy.item, policy.name, identity),
            reference.get_window_stats(policy.item, policy.name, identity).remaining,
        )
        allowed, remaining, reset_in = ours.hit_standing(policy.key(identity), policy.quota, policy.window)
        expected = reference.hit(policy.item, policy.name, identity)
        stats = reference.get_window_stats(policy.item, policy.name, identity)
        assert (allowed, remaining, math.ceil(reset_in)) == (
            expected,
            stats.remaining,
            math.ceil(stats.reset_time - now[0]),
        )
    reference_storage.timer.cancel()


async def test_an_oauth_endpoints_429_carries_the_oauth_error(limited: Any) -> None:
    """OAuth client libraries read `error` first: the 429 of /token and /register says
    `temporarily_unavailable` beside the problem document and its Retry-After."""
    app = limited(rate_limit_signin_per_ip="2/minute")
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        for _ in range(2):
            await c.post(
                "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "x"}
            )
        refused = await c.post(
            "/token", data={"grant_type": "refresh_token", "refresh_token": "x", "client_id": "x"}
        )
        assert refused.status_code == 429, refused.text
        body = refused.json()
        assert body["error"] == "temporarily_unavailable" and body["error_description"]
        assert body["code"] == "rate_limited" and int(refused.headers["Retry-After"]) > 0
        assert refused.headers["content-type"].startswith("application/problem+json")


async def test_public_forms_have_their_own_bucket_and_are_refused_with_a_page(limited: Any) -> None:
    """A client sending public forms does not spend the address's sign-in quota (nor the other
    way round), and is refused with a page in words and `Retry-After`, never problem JSON."""
    app = limited(rate_limit_signin_per_ip="2/minute", rate_limit_public_per_ip="2/minute")
    async with (
        running(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://testserver") as c,
    ):
        a = await signup(c)  # a sign-in quota unit spent
        for path in ("/book/nobody/x", "/manage/nothing/cancel"):
            posted = await c.post(path, data={"csrf": "x"})
            assert posted.status_code in {403, 404, 405}, posted.text[:200]
            assert "public" in _fields(posted.headers["RateLimit-Policy"])
            assert "signin" not in posted.headers["RateLimit-Policy"]
        refused = await c.post("/c/some-token", data={"csrf": "x", "body": "hello"})
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("text/html")
        assert "problems/" not in refused.text and "RateLimit" not in refused.text
        assert "Many forms were sent from your connection" in refused.text
        assert 1 <= int(refused.headers["Retry-After"]) <= 60
        assert "script-src 'self'" in refused.headers["content-security-policy"]
        # Sign-in still has the unit left that the forms did not spend.
        login = await c.post("/v1/auth/login", json={"login": a.slug, "password": a.password})
        assert login.status_code == 200, login.text


@pytest.mark.parametrize("storage", ["async+memory://", "async+memory:///"])
async def test_a_booking_page_counts_each_booking_made_once(db: Database, storage: str) -> None:
    """`check_target` looks without counting; `count_booking` counts a booking once however
    often it is replayed, in this process's counters and in a shared `limits` store alike."""
    from core.ratelimit import RateLimits

    settings = db.settings.model_copy(
        update={"rate_limit_public_per_target": "2/minute", "rate_limit_storage": storage}
    )
    limits = RateLimits(settings, db.tokens)
    assert (limits._memory is not None) == (storage == "async+memory://")
    for _ in range(5):
        assert (await limits.check_target("a-page")).allowed
    for _ in range(3):
        await limits.count_booking("a-page", "booking-1")
    assert (await limits.check_target("a-page")).allowed
    await limits.count_booking("a-page", "booking-2")
    full = await limits.check_target("a-page")
    assert not full.allowed
    error = full.error()
    assert error.extra["policy"] == "target" and 1 <= error.extra["retry_after"] <= 60 and error.hint
    assert (await limits.check_target("another-page")).allowed
