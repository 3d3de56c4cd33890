"""Registry: the MCP tools/list an agent pays for (default install vs everything installed, by
toolset) and catalogue search latency against the same ranking in raw SQL, in one run."""

from __future__ import annotations

import statistics
import time
from collections.abc import Awaitable, Callable

import asyncpg
from mcp import Client
from sqlalchemy import text
from sqlalchemy.engine import make_url

from benchmarks.common import bench_database
from benchmarks.people import acting, person
from core import registry as service
from core.opener import open_context
from core.pagination import PageRequest
from core.registry.schemas import InstallIn
from core.uow import Database
from servers.mcp import build_server, toolsets
from servers.mcp_schema import EVERYTHING_BUDGET, NEW_PERSON_BUDGET, wire_chars
from servers.registry_sync import sync_builtins
from tools.base import ToolRuntime

ROUNDS = 300
QUERIES = ("book", "calendar", "reply to clients", "bokings", "credit balance", "funnel")

RAW_SEARCH = """
SELECT slug, round((ts_rank(search, to_tsquery('english'::regconfig, $1))
  + 0.6 * greatest(similarity(slug, $2), similarity(name, $2))
  + 0.3 * word_similarity($2, concat_ws(' ', slug, name, description, search_text))
  )::numeric, 6)::float8 AS rank
FROM registry.components
WHERE retired_at IS NULL AND availability <> 'platform'
  AND (search @@ to_tsquery('english'::regconfig, $1)
       OR greatest(similarity(slug, $2), similarity(name, $2)) > 0.3
       OR word_similarity($2, concat_ws(' ', slug, name, description, search_text)) > 0.5)
ORDER BY rank DESC, slug LIMIT 21
"""


async def _tools_list(db: Database, token: str, names: list[str] | None = None) -> list[dict[str, object]]:
    async with Client(build_server(db, static_token=token, toolset_names=names)) as c:
        tools = (await c.list_tools()).tools
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


def _sizes(title: str, listed: list[dict[str, object]], toolset_of: dict[str, str], budget: int) -> str:
    """Chars = `wire_chars`: the compact JSON of the tools/list `tools` array, as sent."""
    by_set: dict[str, list[dict[str, object]]] = {}
    for tool in listed:
        by_set.setdefault(toolset_of.get(str(tool["name"]), "?"), []).append(tool)
    total = wire_chars(listed)
    lines = ["", title, f"  {'toolset':12} {'tools':>6} {'chars':>8} {'~tokens':>8}"]
    for name, items in sorted(by_set.items()):
        size = wire_chars(items)
        lines.append(f"  {name:12} {len(items):6d} {size:8d} {size // 4:8d}")
    lines.append(f"  {'total':12} {len(listed):6d} {total:8d} {total // 4:8d}")
    lines.append(f"  {'budget':12} {'':6} {budget:8d} {'':8} {total / budget:6.2f}x of budget")
    return "\n".join(lines)


async def _time(fn: Callable[[str], Awaitable[object]]) -> list[float]:
    samples: list[float] = []
    for i in range(ROUNDS):
        q = QUERIES[i % len(QUERIES)]
        started = time.perf_counter()
        await fn(q)
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def run() -> str:
    async with bench_database() as settings:
        db = Database(settings)
        try:
            await sync_builtins(db)
            token = (await person(db, "bench-reg", "reg@example.com", "R")).access_token
            toolset_of = {t.name: ts.name for ts in toolsets(ToolRuntime(db)) for t in ts.tools}
            default = await _tools_list(db, token)
            async with acting(db, token) as (ctx, uow):
                # Everything installed, as a platform admin sees it: the admin toolset too.
                await uow.session.execute(
                    text("UPDATE platform.persons SET is_platform_admin = true WHERE id = :p"),
                    {"p": ctx.person_id},
                )
                for ts in toolsets(ToolRuntime(db)):
                    if ts.installable:
                        await service.install(ctx, uow, InstallIn(component=ts.name))
            everything = await _tools_list(db, token, ["all"])

            async def via_service(q: str) -> object:
                async with db.uow() as uow:
                    ctx = await open_context(uow, token)
                    return await service.search_components(ctx, uow, PageRequest(limit=20), q)

            url = make_url(settings.database_url or "").set(drivername="postgresql")
            conn = await asyncpg.connect(url.render_as_string(hide_password=False))
            try:

                async def raw(q: str) -> object:
                    words = " | ".join(f"{w}:*" for w in q.lower().split())
                    return await conn.fetch(RAW_SEARCH, words, q)

                await _time(raw)  # warm up both paths
                await _time(via_service)
                raw_ms, svc_ms = await _time(raw), await _time(via_service)
            finally:
                await conn.close()
        finally:
            await db.dispose()
    lines = [
        _sizes(
            "MCP tools/list of a new person (tenancy + registry); chars of compact JSON, tokens ~ chars/4",
            default,
            toolset_of,
            NEW_PERSON_BUDGET,
        ),
        _sizes(
            "MCP tools/list, everything installed (every toolset, admin's too, as a platform admin)",
            everything,
            toolset_of,
            EVERYTHING_BUDGET,
        ),
        "",
        f"Catalogue search ({ROUNDS} queries, {len(QUERIES)} kinds, 1 connection, sequential)",
        f"  {'':44} {'p50 ms':>8} {'p99 ms':>8} {'mean ms':>8} {'vs raw':>7}",
    ]
    base = statistics.mean(raw_ms)
    for label, samples in (
        ("raw SQL (asyncpg, same ranking)", raw_ms),
        ("service (auth + RLS context + search)", svc_ms),
    ):
        mean = statistics.mean(samples)
        p50, p99 = _pct(samples, 0.5), _pct(samples, 0.99)
        lines.append(f"  {label:44} {p50:8.2f} {p99:8.2f} {mean:8.2f} {mean / base:6.2f}x")
    return "\n".join(lines)
