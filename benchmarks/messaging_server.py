"""The messaging bench server: the real app (every toolset) plus bare baseline routes in front
of it doing the same writes and reads with raw asyncpg (no FastAPI, no ORM, no RLS).

  POST /bench/bare/messaging/send?thread=<id>    insert the message, move the thread, write the
                                                  outbox event (one transaction)
  GET  /bench/bare/messaging/threads[?cursor=..]  one inbox page (20), keyset like the app
"""

from __future__ import annotations

import datetime as dt
import json
import uuid
from functools import lru_cache
from urllib.parse import parse_qs

import uvicorn
from starlette.types import Receive, Scope, Send

from benchmarks.server import BareRoutes, header_of, read_body, respond
from core.config import get_settings
from core.messaging.models import Thread
from core.messaging.threads import ThreadFilter
from core.observability import configure_logging
from core.pagination import decode_cursor, encode_cursor
from core.scoping import in_context_of, keyset_tag
from servers.app import create_app


@lru_cache(maxsize=64)
def threads_order(tenant: uuid.UUID) -> str:
    """The inbox list's cursor tag: its ordering, its filters (none here) and the context
    (`core.scoping.keyset_tag`), so the bare route reads and writes the real one's cursors."""
    return keyset_tag(Thread.last_activity_at, Thread.id, under=in_context_of(tenant, ThreadFilter()))


SEND_SQL = [
    """INSERT INTO messaging.messages (id, person_id, org_id, thread_id, direction, channel, author_kind,
         author_person_id, body, delivery_status)
       SELECT $1, $2, t.org_id, t.id, 'out', t.channel, 'person', $2, $3, 'queued'
         FROM messaging.threads t WHERE t.id = $4 AND t.tenant_id = $5
       RETURNING id, occurred_at, created_at""",
    """UPDATE messaging.threads SET message_count = message_count + 1,
         last_activity_at = greatest(last_activity_at, $2), preview = left($3, 200), updated_at = now()
       WHERE id = $1""",
    """INSERT INTO platform.outbox (id, name, data, person_id, org_id, trace_id)
       VALUES ($1, 'messaging/message.sent', $2::jsonb, $3, $4, $5)""",
]

LIST_SQL = """
SELECT t.id, t.channel, t.subject, t.status, t.snoozed_until, t.labels, t.agent_mode,
       t.unread_count, t.message_count, t.preview, t.last_activity_at, t.last_inbound_at, t.org_id,
       t.created_at, t.updated_at, c.id AS client_id, c.name, c.email, c.phone,
       p.id AS assignee_id, p.slug, p.display_name
  FROM messaging.threads t
  JOIN platform.clients c ON c.id = t.client_id AND c.tenant_id = t.tenant_id
  LEFT JOIN platform.persons p ON p.id = t.assignee_id
 WHERE t.tenant_id = $1 {keyset}
 ORDER BY t.last_activity_at DESC, t.id DESC
 LIMIT 21
"""


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value else None


class BareMessaging(BareRoutes):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith("/bench/bare/messaging/"):
            await self.app(scope, receive, send)
            return
        claims = await self.verified(scope, send)
        if claims is None:
            return
        person = uuid.UUID(claims["sub"])
        tenant = uuid.UUID(header_of(scope, b"x-bench-tenant"))
        query = {k: v[0] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
        if path.endswith("/send"):
            await self._send_message(send, receive, person, tenant, uuid.UUID(query["thread"]))
        else:
            await self._list(send, tenant, query.get("cursor"))

    async def _send_message(
        self, send: Send, receive: Receive, person: uuid.UUID, tenant: uuid.UUID, thread: uuid.UUID
    ) -> None:
        text = json.loads(await read_body(receive))["body"]
        assert self.pool is not None
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(SEND_SQL[0], uuid.uuid4(), person, text, thread, tenant)
            await conn.execute(SEND_SQL[1], thread, row["occurred_at"], text)
            event = {"message_id": str(row["id"]), "thread_id": str(thread), "channel": "portal"}
            await conn.execute(SEND_SQL[2], uuid.uuid4(), json.dumps(event), person, tenant, uuid.uuid4().hex)
        await respond(
            send,
            201,
            {
                "id": str(row["id"]),
                "thread_id": str(thread),
                "body": text,
                "delivery_status": "queued",
                "occurred_at": _iso(row["occurred_at"]),
                "created_at": _iso(row["created_at"]),
            },
            statements=3,
        )

    async def _list(self, send: Send, tenant: uuid.UUID, cursor: str | None) -> None:
        assert self.pool is not None
        if cursor:
            after = decode_cursor(cursor, 2, threads_order(tenant))
            rows = await self.pool.fetch(
                LIST_SQL.format(keyset="AND (t.last_activity_at, t.id) < ($2, $3)"),
                tenant,
                after[0],
                after[1],
            )
        else:
            rows = await self.pool.fetch(LIST_SQL.format(keyset=""), tenant)
        items = [
            {
                "id": str(r["id"]),
                "client": {
                    "id": str(r["client_id"]),
                    "untrusted_name": r["name"],
                    "email": r["email"],
                    "phone": r["phone"],
                },
                "channel": r["channel"],
                "untrusted_subject": r["subject"],
                "status": r["status"],
                "snoozed_until": _iso(r["snoozed_until"]),
                "assignee": {
                    "id": str(r["assignee_id"]),
                    "slug": r["slug"],
                    "display_name": r["display_name"],
                }
                if r["assignee_id"]
                else None,
                "labels": list(r["labels"]),
                "agent_mode": r["agent_mode"],
                "unread_count": r["unread_count"],
                "message_count": r["message_count"],
                "untrusted_preview": r["preview"],
                "last_activity_at": _iso(r["last_activity_at"]),
                "last_inbound_at": _iso(r["last_inbound_at"]),
                "org_id": str(r["org_id"]) if r["org_id"] else None,
                "created_at": _iso(r["created_at"]),
                "updated_at": _iso(r["updated_at"]),
            }
            for r in rows[:20]
        ]
        last = rows[19] if len(rows) > 20 else None
        next_cursor = (
            encode_cursor(last["last_activity_at"], last["id"], tag=threads_order(tenant)) if last else None
        )
        await respond(send, 200, {"items": items, "next_cursor": next_cursor}, statements=1)


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    uvicorn.run(
        BareMessaging(create_app(settings)),
        host="127.0.0.1",
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main()
