"""Messaging at inbox scale: send a message and list the inbox through REST and MCP, each against
a raw-SQL route doing the same writes/reads, on an org inbox of 100k threads / 1M messages
generated here with COPY; and the inbox's page 1000 against its page 1 (keyset stays flat).

Sizes: BENCH_MSG_THREADS (default 100000), BENCH_MSG_PER_THREAD (default 10)."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import random
import time
import uuid
from collections.abc import Iterator
from typing import Any

import asyncpg
import httpx

from benchmarks.common import (
    Result,
    Row,
    Target,
    bench_database,
    install,
    mcp_call,
    mcp_headers,
    near_rest,
    server,
    side_by_side,
    table,
)
from benchmarks.messaging_server import threads_order
from benchmarks.people import acting, person
from core.config import Settings
from core.db import asyncpg_dsn
from core.pagination import encode_cursor
from core.tenancy import create_org
from core.tenancy.schemas import OrgIn
from core.uow import Database

THREADS = int(os.environ.get("BENCH_MSG_THREADS", "100000"))
PER_THREAD = int(os.environ.get("BENCH_MSG_PER_THREAD", "10"))
CLIENTS = max(1, THREADS // 5)
CHUNK = 50_000
WORDS = [
    "lesson",
    "booking",
    "tuesday",
    "monday",
    "friday",
    "price",
    "invoice",
    "thanks",
    "hello",
    "class",
    "studio",
    "time",
    "move",
    "cancel",
    "session",
    "payment",
    "question",
    "schedule",
    "available",
    "morning",
    "evening",
    "weekend",
    "week",
    "next",
    "today",
    "tomorrow",
    "confirm",
    "please",
    "great",
    "sure",
    "address",
    "parking",
    "late",
    "early",
    "gift",
    "card",
    "voucher",
]


def _sentence(rng: random.Random, n: int = 8) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."


async def _without_indexes(conn: asyncpg.Connection, table: str) -> list[str]:
    """Drop a table's secondary indexes (kept: the primary key) for a fast COPY; returns their
    definitions to recreate afterwards."""
    schema, name = table.split(".")
    rows = await conn.fetch(
        "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.schemaname = $1 AND i.tablename = $2"
        " AND i.indexname NOT LIKE 'pk_%'",
        schema,
        name,
    )
    for r in rows:
        await conn.execute(f'DROP INDEX {schema}."{r["indexname"]}"')
    return [r["indexdef"] for r in rows]


async def generate(
    settings: Settings, person_id: uuid.UUID, org_id: uuid.UUID
) -> tuple[list[uuid.UUID], str]:
    """COPY the inbox in as the owner (superuser) connection; foreign keys are not re-checked
    row by row (session_replication_role), the data being consistent by construction."""
    rng = random.Random(7)
    now = dt.datetime.now(dt.UTC)
    conn = await asyncpg.connect(asyncpg_dsn(settings.database_url or ""))
    try:
        await conn.execute("SET session_replication_role = replica")
        indexes = []
        for t in ("messaging.messages", "messaging.threads"):
            indexes += await _without_indexes(conn, t)
        client_ids = [uuid.uuid4() for _ in range(CLIENTS)]
        await conn.copy_records_to_table(
            "clients",
            schema_name="platform",
            columns=["id", "person_id", "org_id", "name", "email"],
            records=[
                (cid, person_id, org_id, f"Client {i}", f"client{i}@example.com")
                for i, cid in enumerate(client_ids)
            ],
        )
        thread_ids = [uuid.uuid4() for _ in range(THREADS)]
        statuses = ["closed"] * 14 + ["open"] * 3 + ["pending"] * 3
        activity = [now - dt.timedelta(seconds=300 * i + rng.randint(0, 299)) for i in range(THREADS)]

        def thread_rows() -> Iterator[tuple[Any, ...]]:
            for i, tid in enumerate(thread_ids):
                status = statuses[i % len(statuses)]
                unread = rng.randint(1, 2) if status == "open" else 0
                yield (
                    tid, person_id, org_id, client_ids[i % CLIENTS], "portal",
                    f"Subject {i} {_sentence(rng, 4)}", status, "draft_only", unread, PER_THREAD,
                    _sentence(rng)[:200], activity[i],
                    activity[i] - dt.timedelta(minutes=5), activity[i] - dt.timedelta(days=3), activity[i],
                )  # fmt: skip

        columns = [
            "id", "person_id", "org_id", "client_id", "channel", "subject", "status", "agent_mode",
            "unread_count", "message_count", "preview", "last_activity_at", "last_inbound_at", "created_at",
            "updated_at",
        ]  # fmt: skip
        rows = thread_rows()
        while chunk := list(itertools.islice(rows, CHUNK)):
            await conn.copy_records_to_table(
                "threads", schema_name="messaging", columns=columns, records=chunk
            )

        def message_rows() -> Iterator[tuple[Any, ...]]:
            for i, tid in enumerate(thread_ids):
                for k in range(PER_THREAD):
                    inbound = k % 2 == 0
                    at = activity[i] - dt.timedelta(minutes=10 * (PER_THREAD - k))
                    yield (
                        uuid.uuid4(), person_id, org_id, tid, "in" if inbound else "out", "portal",
                        "client" if inbound else "person", None if inbound else person_id, _sentence(rng),
                        None if inbound else "sent", at, at, at if inbound else None,
                        None if inbound else at,
                    )  # fmt: skip

        mcolumns = [
            "id", "person_id", "org_id", "thread_id", "direction", "channel", "author_kind",
            "author_person_id", "body", "delivery_status", "occurred_at", "created_at", "read_at", "sent_at",
        ]  # fmt: skip
        mrows = message_rows()
        while chunk := list(itertools.islice(mrows, CHUNK)):
            await conn.copy_records_to_table(
                "messages", schema_name="messaging", columns=mcolumns, records=chunk
            )
        await conn.execute("SET session_replication_role = DEFAULT")
        for definition in indexes:
            await conn.execute(definition)
        for t in ("platform.clients", "messaging.threads", "messaging.messages"):
            await conn.execute(f"ANALYZE {t}")
        # The key of the last row of page 999: passing it as the cursor asks for page 1000 (at a
        # small size, the last full page: a real cursor all the same, as the smoke test runs it).
        row = await conn.fetchrow(
            "SELECT last_activity_at, id FROM messaging.threads WHERE tenant_id = $1"
            " ORDER BY last_activity_at DESC, id DESC OFFSET $2 LIMIT 1",
            org_id,
            min(19_979, max(THREADS - 21, 0)),
        )
        cursor = encode_cursor(row["last_activity_at"], row["id"], tag=threads_order(org_id)) if row else ""
    finally:
        await conn.close()
    # Sends go to recent threads (a busy inbox), spread so they do not queue on one row.
    return thread_ids[:2000], cursor


REST_SEND = "REST POST .../messages"


async def _same_send(client: httpx.AsyncClient, *doors: Any) -> None:
    """The baseline answers what the door answers: the message as sent, queued for delivery."""
    answers = [(await door(client)).json() for door in doors]
    shapes = [(a["body"], a["delivery_status"]) for a in answers]
    assert all(shape == shapes[0] for shape in shapes), answers


async def run() -> str:
    async with bench_database() as settings:
        db = Database(settings)
        auth = await person(db, "inbox-owner", "inbox@example.com", "Inbox")
        async with acting(db, auth.access_token) as (ctx, uow):
            org = await create_org(ctx, uow, OrgIn(slug="busy-studio", name="Busy Studio"))
        await db.dispose()
        started = time.perf_counter()
        threads, cursor = await generate(settings, auth.person.id, org.id)
        generated = time.perf_counter() - started

        token = auth.access_token
        h = {"Authorization": f"Bearer {token}", "X-Atlilith-Org": org.slug}
        bare_h = {"Authorization": f"Bearer {token}", "X-Bench-Tenant": str(org.id)}
        list_h, send_h = (mcp_headers(h, name) for name in ("messaging_threads_list", "messaging_send"))
        pick = itertools.cycle(threads)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with (
            server(settings, "benchmarks.messaging_server", {"ATLILITH_TOOLSETS": "all"}) as base,
            httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client,
        ):
            await install(client, h, "messaging")
            for check in (
                await client.post(
                    "/mcp", content=mcp_call("messaging_threads_list", {"org": org.slug}), headers=list_h
                ),
                await client.post(
                    "/mcp",
                    content=mcp_call(
                        "messaging_send", {"org": org.slug, "thread_id": str(threads[0]), "body": "check"}
                    ),
                    headers=send_h,
                ),
            ):
                assert check.status_code == 200 and '"isError":false' in check.text, check.text[:500]
            page1000 = await client.get(f"/v1/messaging/threads?cursor={cursor}", headers=h)
            assert page1000.status_code == 200 and len(page1000.json()["items"]) == 20, page1000.text[:300]

            text = {"body": "Thanks, see you Tuesday at 10."}

            def bare_send(c: httpx.AsyncClient) -> Any:
                return c.post(f"/bench/bare/messaging/send?thread={next(pick)}", json=text, headers=bare_h)

            def rest_send(c: httpx.AsyncClient) -> Any:
                return c.post(f"/v1/messaging/threads/{next(pick)}/messages", json=text, headers=h)

            def mcp_send(c: httpx.AsyncClient) -> Any:
                args = {"org": org.slug, "thread_id": str(next(pick)), **text}
                return c.post("/mcp", content=mcp_call("messaging_send", args), headers=send_h)

            # Lists first, on the freshly loaded inbox; then the sends.
            listing: list[Result] = []
            for label, cur in (("page 1", None), ("page 1000", cursor)):
                q = f"?cursor={cur}" if cur else ""
                args: dict[str, Any] = {"org": org.slug, **({"cursor": cur} if cur else {})}

                def bare_list(c: httpx.AsyncClient, q: str = q) -> Any:
                    return c.get(f"/bench/bare/messaging/threads{q}", headers=bare_h)

                def rest_list(c: httpx.AsyncClient, q: str = q) -> Any:
                    return c.get(f"/v1/messaging/threads{q}", headers=h)

                def mcp_list(c: httpx.AsyncClient, a: dict[str, Any] = args) -> Any:
                    return c.post("/mcp", content=mcp_call("messaging_threads_list", a), headers=list_h)

                rest_label = f"REST GET /threads {label}"
                listing += await side_by_side(
                    client,
                    Row(f"raw SQL inbox {label}", bare_list),
                    Row(rest_label, rest_list),
                    Row(f"MCP threads_list {label}", mcp_list, near_rest(rest_label)),
                )
            await _same_send(client, bare_send, rest_send)
            send: list[Result] = await side_by_side(
                client,
                Row("raw SQL send (JWT, 3 statements)", bare_send),
                Row(REST_SEND, rest_send, Target(min_ratio=0.5)),
                Row("MCP messaging_send", mcp_send, near_rest(REST_SEND)),
            )
        sizes = (
            f"  inbox: {THREADS:,} threads, {THREADS * PER_THREAD:,} messages, {CLIENTS:,} clients;"
            f" generated with COPY in {generated:.0f} s"
        )
        flat = "\n".join(
            f"  page 1000 / page 1 p50: {b.label.split(' page')[0]:22} {b.pct(0.5) / a.pct(0.5):5.2f}x"
            f"   SQL/req {a.stmts} -> {b.stmts}"
            for a, b in zip(listing[:3], listing[3:], strict=True)
        )
        return "\n".join(
            [
                sizes,
                table("Send a message (org context, 2,000 recent threads in rotation)", send, send[0]),
                table("Inbox list, page 1 (20 threads, newest activity first)", listing[:3], listing[0]),
                table("Inbox list, page 1000 (keyset cursor)", listing[3:], listing[3]),
                "",
                "Keyset stays flat",
                flat,
            ]
        )
