"""Shared benchmark plumbing: a fresh database, a real server process, a load loop, stats."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import httpx
from sqlalchemy.engine import make_url

from core.config import Settings
from core.embedded import DATABASE, ensure_database
from core.embedded import start as start_embedded
from core.migrate import create_database, drop_database, migrate

if TYPE_CHECKING:
    import uvicorn
    from starlette.types import ASGIApp

ROOT = Path(__file__).resolve().parent.parent
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "8"))
# The slices each row of a table is measured in, alternating with the others (`side_by_side`).
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "4"))


# The MCP rows call tools as the SDK 2.x client does by default: protocol 2026-07-28, the
# version and capabilities in the request's `_meta`, the routing headers set. A call with no
# protocol header takes the SDK's handshake-era stateless path instead (a transport, streams and
# a dispatcher per request); `bench_me` shows that row beside it (docs/performance.md).
MCP_PROTOCOL = "2026-07-28"


def mcp_call(name: str, arguments: Mapping[str, Any], *, protocol: str | None = MCP_PROTOCOL) -> str:
    """One JSON-RPC `tools/call` body; `protocol=None` for a handshake-era call."""
    params: dict[str, Any] = {"name": name, "arguments": dict(arguments)}
    if protocol is not None:
        params["_meta"] = {
            "io.modelcontextprotocol/protocolVersion": protocol,
            "io.modelcontextprotocol/clientCapabilities": {},
        }
    return json.dumps({"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": params})


def mcp_headers(auth: Mapping[str, str], name: str, *, protocol: str | None = MCP_PROTOCOL) -> dict[str, str]:
    """The HTTP headers of a `tools/call` of tool `name` (they name it under 2026-07-28)."""
    headers = {**auth, "Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
    if protocol is not None:
        headers |= {"MCP-Protocol-Version": protocol, "Mcp-Method": "tools/call", "Mcp-Name": name}
    return headers


@dataclass
class Result:
    label: str
    latencies: list[float] = field(default_factory=list)
    elapsed: float = 0.0
    statements: list[int] = field(default_factory=list)
    errors: int = 0
    target: Target | None = None

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.elapsed if self.elapsed else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    @property
    def stmts(self) -> str:
        return f"{statistics.mean(self.statements):.1f}" if self.statements else "-"


@dataclass(frozen=True)
class Target:
    """What a row must reach (issue 19's goals): throughput at least `min_ratio` of the table's
    baseline, p50 latency at most `max_latency` times the row labelled `latency_vs`, at most
    `max_sql` statements per request. Printed beside the figure; a miss is marked and counted."""

    min_ratio: float | None = None
    max_latency: float | None = None
    latency_vs: str | None = None
    max_sql: float | None = None


def near_rest(rest_label: str) -> Target:
    """The goal of a tool call (issue 19): p50 at most 1.3 times the same call over REST, the row
    labelled `rest_label`."""
    return Target(max_latency=1.3, latency_vs=rest_label)


@dataclass(frozen=True)
class Verdict:
    benchmark: str
    goal: str
    actual: str
    met: bool


# Every verdict of this run, in order: `./run bench` ends with the scoreboard.
VERDICTS: list[Verdict] = []


def check(benchmark: str, goal: str, actual: str, met: bool) -> str:
    """Record one target's verdict and return its short mark for a table cell."""
    VERDICTS.append(Verdict(benchmark, goal, actual, met))
    return f"{goal} {'ok' if met else 'MISS'}"


def scoreboard() -> str:
    if not VERDICTS:
        return ""
    missed = [v for v in VERDICTS if not v.met]
    lines = [f"Targets: {len(VERDICTS) - len(missed)} met, {len(missed)} missed"]
    for v in VERDICTS:
        lines.append(f"  {'ok  ' if v.met else 'MISS'} {v.benchmark:44} {v.goal:>18}  actual {v.actual}")
    return "\n".join(lines)


def _verdicts(r: Result, results: list[Result], baseline: Result, title: str) -> str:
    t = r.target
    if t is None:
        return ""
    marks = []
    name = f"{r.label} ({title})" if len(r.label) < 20 else r.label
    if t.min_ratio is not None:
        ratio = r.rps / baseline.rps if baseline.rps else 0.0
        marks.append(check(name, f">={t.min_ratio:.2f}x", f"{ratio:.2f}x", ratio >= t.min_ratio))
    if t.max_latency is not None and t.latency_vs is not None:
        other = next(o for o in results if o.label == t.latency_vs)
        factor = r.pct(0.5) / other.pct(0.5) if other.latencies else float("inf")
        marks.append(check(name, f"p50<={t.max_latency:.1f}x", f"{factor:.2f}x p50", factor <= t.max_latency))
    if t.max_sql is not None:
        sql = statistics.mean(r.statements) if r.statements else float("inf")
        marks.append(check(name, f"<={t.max_sql:g} SQL", f"{sql:.1f} SQL", sql <= t.max_sql))
    return "; ".join(marks)


def table(title: str, results: list[Result], baseline: Result) -> str:
    lines = [
        "",
        title,
        f"  {'':34} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'SQL/req':>8}"
        f" {'vs baseline':>12} {'errors':>7}  target",
    ]
    for r in results:
        ratio = r.rps / baseline.rps if baseline.rps else float("nan")
        lines.append(
            f"  {r.label:34} {r.rps:9.0f} {r.pct(0.5):8.2f} {r.pct(0.99):8.2f} {r.stmts:>8}"
            f" {ratio:11.2f}x {r.errors:7d}  {_verdicts(r, results, baseline, title)}".rstrip()
        )
    return "\n".join(lines)


Send = Callable[[httpx.AsyncClient], Awaitable[httpx.Response]]


@dataclass(frozen=True)
class Row:
    """One row of a table measured side by side with the others (`side_by_side`)."""

    label: str
    send: Send
    target: Target | None = None


async def side_by_side(
    client: httpx.AsyncClient,
    *rows: Row,
    seconds: float = SECONDS,
    concurrency: int = CONCURRENCY,
    rounds: int = ROUNDS,
) -> list[Result]:
    """A baseline and the rows compared with it, each measured for `seconds` in all, in
    `rounds` alternating slices whose order turns by one each round: every row sees the same
    minutes of a shared machine, and none is always the first after a switch. Measured one
    after the other, bare first, the same head's `GET /v1/me` ratio read 0.70 ± 0.11 on 2 vCPUs
    (3-s runs); in alternating slices 0.75-0.80 ± 0.05-0.11 (docs/performance.md)."""
    results = [Result(row.label, target=row.target) for row in rows]
    # Warm up at the measured concurrency, so that the pools have opened the connections that
    # load needs (each costs a connect and its set-up) before the clock starts, on every side.
    for row in rows:
        await _drive(None, row.send, client, min(1.0, seconds / 4), concurrency)
    for turn in range(rounds):
        for i in range(len(rows)):
            k = (i + turn) % len(rows)
            await _drive(results[k], rows[k].send, client, seconds / rounds, concurrency)
    return results


async def _drive(
    result: Result | None, send: Send, client: httpx.AsyncClient, seconds: float, concurrency: int
) -> None:
    """`concurrency` workers sending for `seconds`; what they measured added to `result` (none
    while warming up)."""
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            response = await send(client)
            took = time.perf_counter() - t0
            if result is None:
                continue
            if response.status_code >= 400:
                result.errors += 1
                continue
            result.latencies.append(took)
            header = response.headers.get("x-db-statements")
            if header is not None:
                result.statements.append(int(header))

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    if result is not None:
        result.elapsed += time.perf_counter() - started


@asynccontextmanager
async def bench_database() -> AsyncIterator[Settings]:
    """A fresh, migrated database on DATABASE_URL's server or the embedded one; dropped after."""
    admin = os.environ.get("DATABASE_URL")
    if not admin:
        admin = start_embedded(ROOT / ".atlilith" / "bench").url(DATABASE)
        await ensure_database(admin, DATABASE)
    name = f"atlilith_bench_{secrets.token_hex(3)}"
    await create_database(admin, name)
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    settings = bench_settings(url, expose_db_stats=True, data_dir=ROOT / ".atlilith" / "bench-data")
    await migrate(settings)
    try:
        yield settings
    finally:
        await drop_database(admin, name)


def quiet_settings(database_url: str, jwt_secret: str, **overrides: Any) -> Settings:
    """Settings of an app run to be tested or measured rather than served: the cheapest password
    hashing, no relay in the process (the test or benchmark drives delivery), warnings only, as
    JSON. The tests' apps (tests.conftest.app_settings) are built the same way."""
    return Settings(
        env="test",
        database_url=database_url,
        jwt_secret=jwt_secret,
        password_hash_profile="cheapest",
        relay_enabled=False,
        log_level="warning",
        log_format="json",
        **overrides,
    )


def bench_settings(database_url: str, **overrides: Any) -> Settings:
    """A benchmark's app in the benchmark's own process: quiet, rate limits out of reach."""
    return quiet_settings(
        database_url,
        "bench-secret-" + "z" * 40,
        rate_limit_per_credential=OUT_OF_REACH_ENV["ATLILITH_RATE_LIMIT_PER_CREDENTIAL"],
        rate_limit_per_ip=OUT_OF_REACH_ENV["ATLILITH_RATE_LIMIT_PER_IP"],
        rate_limit_signin_per_ip=OUT_OF_REACH_ENV["ATLILITH_RATE_LIMIT_SIGNIN_PER_IP"],
        **overrides,
    )


# Rate limits stay on (their cost is part of every figure) but out of reach of a benchmark's
# one client on one address.
OUT_OF_REACH_ENV = {
    "ATLILITH_RATE_LIMIT_PER_CREDENTIAL": "100000000/minute",
    "ATLILITH_RATE_LIMIT_PER_IP": "100000000/minute",
    "ATLILITH_RATE_LIMIT_SIGNIN_PER_IP": "100000000/minute",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class InLoopServer:
    """A small fake server (a peer, Inngest's event API) on 127.0.0.1:<free port>, served by
    uvicorn in the caller's event loop as `async with`. Subclasses build their app and hand it
    to `listen`. The resilience scenarios' fakes and the tests' (tests.support.serving) share it."""

    port: int
    server: uvicorn.Server
    task: asyncio.Task[None]
    # True for a fake that may be holding requests open (a slow upstream): stop without waiting.
    force_exit = False

    def listen(self, app: ASGIApp) -> None:
        import uvicorn  # a server's import, paid only by the fakes that listen

        self.port = free_port()
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="error"))

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> Self:
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.01)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.server.force_exit = self.force_exit
        await self.task


@asynccontextmanager
async def server(
    settings: Settings, module: str = "benchmarks.server", env: Mapping[str, str] | None = None
) -> AsyncIterator[str]:
    """The app (plus the bare baseline routes of `module`) in its own process, as in production:
    logging configured as `atlilith serve` does, JSON lines at info (one per request), written to
    a file in the data directory rather than to the bench's terminal."""
    port = free_port()
    environ = {
        **os.environ,
        "DATABASE_URL": settings.database_url or "",
        "ATLILITH_JWT_SECRET": settings.jwt_secret or "",
        "ATLILITH_EXPOSE_DB_STATS": "1",
        "ATLILITH_RELAY_ENABLED": "0",
        # The MCP figures are one JSON-RPC POST per call, no handshake: a stateless client.
        "ATLILITH_MCP_HTTP_SESSIONS": "stateless",
        "ATLILITH_LOG_LEVEL": "info",
        "ATLILITH_LOG_FORMAT": "json",
        **OUT_OF_REACH_ENV,
        **(env or {}),
        "ATLILITH_PORT": str(port),
        "ATLILITH_DATA_DIR": str(settings.data_dir),
        "PYTHONPATH": str(ROOT),
    }
    log_path = Path(settings.data_dir) / f"{module.rsplit('.', 1)[-1]}-{port}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", module], cwd=ROOT, env=environ, stdout=subprocess.DEVNULL, stderr=log
        )
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient() as c:
            # A loaded machine (a test run beside it) can take half a minute to import and migrate.
            for _ in range(600):
                if proc.poll() is not None:
                    break
                try:
                    if (await c.get(f"{base}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
            if proc.poll() is not None or not await _healthy(base):
                tail = log_path.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"bench server did not start; its log ({log_path}) ends:\n{tail}")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=20)


async def _healthy(base: str) -> bool:
    try:
        async with httpx.AsyncClient() as c:
            return (await c.get(f"{base}/health")).status_code == 200
    except httpx.TransportError:
        return False


async def install(client: httpx.AsyncClient, headers: dict[str, str], *components: str) -> None:
    """Install components in the context `headers` act in: their MCP tools answer only there
    (the registry's gate), and an agent pays that check on every call, so it is measured."""
    for component in components:
        r = await client.post("/v1/installations", json={"component": component}, headers=headers)
        assert r.status_code in (200, 201), r.text[:300]
