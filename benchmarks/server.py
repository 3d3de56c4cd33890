"""The bench server: the real app, plus bare baseline routes dispatched before it (no FastAPI,
no middleware, no ORM, no RLS) doing the same lookups and writes with raw asyncpg: the floor a
door's figure is measured against."""

from __future__ import annotations

import cProfile
import datetime as dt
import json
import os
import uuid
from typing import Any
from urllib.parse import parse_qsl

import asyncpg
import jwt
import uvicorn
from starlette.types import Receive, Scope, Send

from core.config import get_settings
from core.db import asyncpg_dsn
from core.observability import configure_logging
from servers.app import create_app

ME_SQL = """
SELECT p.id, p.slug, p.display_name, p.email, p.is_platform_admin,
       m.role, m.created_at, o.id AS org_id, o.slug AS org_slug, o.name
  FROM platform.persons p
  LEFT JOIN platform.org_members m ON m.person_id = p.id
  LEFT JOIN platform.orgs o ON o.id = m.org_id
 WHERE p.id = $1 AND p.status = 'active'
"""


# POST /bench/bare/hold: the essential writes of a hold -- one INSERT that the exclusion
# constraint guards (the service's terms read in the same statement), and its outbox row.
HOLD_SQL = """
INSERT INTO bookings.bookings (id, service_id, provider_id, status, start_at, end_at,
       buffer_before_minutes, buffer_after_minutes, hold_expires_at, price_amount, currency,
       location_kind, location, person_id, org_id)
SELECT $1, s.id, $3, 'held', $4::timestamptz, $4::timestamptz + make_interval(mins => s.duration_minutes),
       s.buffer_before_minutes, s.buffer_after_minutes, now() + interval '5 minutes', s.price_amount,
       s.currency, s.location_kind, s.location, $5, $6
  FROM bookings.services s
 WHERE s.id = $2
RETURNING id, start_at, end_at
"""
OUTBOX_SQL = """
INSERT INTO platform.outbox (id, name, data, person_id, org_id, trace_id)
VALUES ($1, $2, $3::jsonb, $4, $5, $6)
"""
# GET /bench/bare/busy: what a slot search cannot do without -- the provider's busy time in the
# window, the same rows the offer statement's busy read returns (active bookings, buffered).
BUSY_SQL = """
SELECT lower(blocked) AS blocked_from, upper(blocked) AS blocked_until
  FROM bookings.bookings
 WHERE provider_id = $1 AND blocked && tstzrange($2, $3) AND status IN ('held', 'requested', 'confirmed')
 ORDER BY blocked
"""
# POST /bench/bare/run: the essential writes of jobs_run -- the credits held on the account
# (a conditional UPDATE, so never overdrawn), the ledger entry, the job row, and its outbox row.
RUN_SQL = """
WITH acct AS (
  UPDATE billing.accounts SET held = held + $3, updated_at = now()
   WHERE tenant_id = $2 AND balance - held >= $3
  RETURNING id, org_id, balance, held
), entry AS (
  INSERT INTO billing.ledger (id, person_id, org_id, account_id, kind, amount, balance_delta,
                              held_delta, balance_after, held_after, key, job_id)
  SELECT gen_random_uuid(), $2, acct.org_id, acct.id, 'hold', $3, 0, $3, acct.balance, acct.held,
         'hold:' || $1::uuid::text, $1::uuid FROM acct
)
INSERT INTO billing.jobs (id, component, action, executor, status, input, credits_quoted,
                          credits_held, hold_status, deadline_at, person_id)
SELECT $1::uuid, $4, $5, 'builtin', 'queued', $6::jsonb, $3, $3, 'open', now() + interval '1 hour', $2
  FROM acct
RETURNING id
"""


class BareRoutes:
    """What every bare baseline does before its own SQL: a raw asyncpg pool on the owner/admin
    URL (the floor: no RLS, no per-request settings) and the bearer JWT verified."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.settings = get_settings()
        self.pool: asyncpg.Pool | None = None

    async def verified(self, scope: Scope, send: Send) -> dict[str, Any] | None:
        """The token's claims, or None once a 401 is sent."""
        if self.pool is None:
            self.pool = await asyncpg.create_pool(
                asyncpg_dsn(self.settings.database_url or ""), min_size=2, max_size=10
            )
        token = header_of(scope, b"authorization").removeprefix("Bearer ")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self.settings.jwt_secret or "",
                algorithms=["HS256"],
                audience=self.settings.jwt_audience,
            )
        except jwt.PyJWTError:
            await respond(send, 401, {"error": "unauthenticated"})
            return None
        return claims


class Bare(BareRoutes):
    """Bare routes: GET /bench/bare/me (verify the JWT, fetch person and memberships in one
    statement); GET /bench/bare/busy (verify the JWT, fetch a provider's busy ranges between two
    instants in one statement); POST /bench/bare/hold (verify the JWT, insert the held booking and its event);
    POST /bench/bare/run (verify the JWT, hold a credit, insert the job and its event)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = ROUTES.get(scope["path"]) if scope["type"] == "http" else None
        if route is None:
            await self.app(scope, receive, send)
            return
        claims = await self.verified(scope, send)
        if claims is not None:
            await getattr(self, route)(scope, claims, receive, send)

    async def me(self, scope: Scope, claims: dict[str, Any], receive: Receive, send: Send) -> None:
        assert self.pool is not None
        rows = await self.pool.fetch(ME_SQL, uuid.UUID(claims["sub"]))
        if not rows:
            await respond(send, 401, {"error": "unauthenticated"})
            return
        first = rows[0]
        body = {
            "person": {
                "id": str(first["id"]),
                "slug": first["slug"],
                "display_name": first["display_name"],
                "email": first["email"],
            },
            "memberships": [
                {
                    "org": {"id": str(r["org_id"]), "slug": r["org_slug"], "name": r["name"]},
                    "role": r["role"],
                    "joined_at": r["created_at"].isoformat(),
                }
                for r in rows
                if r["org_id"] is not None
            ],
            "platform_admin": first["is_platform_admin"],
        }
        await respond(send, 200, body, statements=1)

    async def busy(self, scope: Scope, claims: dict[str, Any], receive: Receive, send: Send) -> None:
        assert self.pool is not None
        query = dict(parse_qsl(bytes(scope["query_string"]).decode()))
        rows = await self.pool.fetch(
            BUSY_SQL,
            uuid.UUID(query["provider_id"]),
            dt.datetime.fromisoformat(query["from"]),
            dt.datetime.fromisoformat(query["to"]),
        )
        body = {
            "provider_id": query["provider_id"],
            "busy": [[r["blocked_from"].isoformat(), r["blocked_until"].isoformat()] for r in rows],
        }
        await respond(send, 200, body, statements=1)

    async def hold(self, scope: Scope, claims: dict[str, Any], receive: Receive, send: Send) -> None:
        assert self.pool is not None
        data = json.loads(await read_body(receive))
        person, org = uuid.UUID(claims["sub"]), uuid.UUID(data["org_id"])
        async with self.pool.acquire() as conn, conn.transaction():
            try:
                row = await conn.fetchrow(
                    HOLD_SQL,
                    uuid.uuid4(),
                    uuid.UUID(data["service_id"]),
                    uuid.UUID(data["provider_id"]),
                    dt.datetime.fromisoformat(data["start_at"]),
                    person,
                    org,
                )
            except asyncpg.ExclusionViolationError:
                await respond(send, 409, {"code": "slot_taken"}, statements=1)
                return
            if row is None:
                await respond(send, 404, {"code": "service_not_found"}, statements=1)
                return
            event = {"booking_id": str(row["id"]), "status": "held", "start_at": row["start_at"].isoformat()}
            trace = uuid.uuid4().hex
            await conn.execute(
                OUTBOX_SQL, uuid.uuid4(), "bookings/booking.held", json.dumps(event), person, org, trace
            )
        body = {
            "id": str(row["id"]),
            "status": "held",
            "start_at": row["start_at"].isoformat(),
            "end_at": row["end_at"].isoformat(),
        }
        await respond(send, 201, body, statements=2)

    async def run(self, scope: Scope, claims: dict[str, Any], receive: Receive, send: Send) -> None:
        assert self.pool is not None
        data = json.loads(await read_body(receive))
        person, job_id = uuid.UUID(claims["sub"]), uuid.uuid4()
        async with self.pool.acquire() as conn, conn.transaction():
            found = await conn.fetchval(
                RUN_SQL, job_id, person, 1, "identity", "resolve-person", json.dumps(data["input"])
            )
            if found is None:
                await respond(send, 402, {"code": "insufficient_credits"}, statements=1)
                return
            event = {"job_id": str(job_id), "component": "identity", "action": "resolve-person"}
            await conn.execute(
                OUTBOX_SQL, uuid.uuid4(), "jobs/job.queued", json.dumps(event), person, None, job_id.hex
            )
        body = {"job_id": str(job_id), "trace_id": job_id.hex, "status": "queued", "credits_held": 1}
        await respond(send, 202, body, statements=2)


ROUTES = {
    "/bench/bare/me": "me",
    "/bench/bare/busy": "busy",
    "/bench/bare/hold": "hold",
    "/bench/bare/run": "run",
}


def header_of(scope: Scope, name: bytes) -> str:
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value).decode()
    return ""


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


async def respond(send: Send, status: int, body: dict[str, Any], statements: int = 0) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"x-db-statements", str(statements).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def main() -> None:
    settings = get_settings()
    configure_logging(settings)
    app: Any = Bare(create_app(settings))
    profile = os.environ.get("BENCH_PROFILE")  # a path: the server under cProfile, written at shutdown
    if profile:
        app = Profiled(app, profile)
    # As `atlilith serve` runs it (servers.cli): no proxy-header middleware in front of the app.
    uvicorn.run(
        app,
        host="127.0.0.1",
        port=settings.port,
        log_level="warning",
        access_log=False,
        lifespan="on",
        proxy_headers=False,
    )


class Profiled:
    """cProfile around the app, its statistics written when the lifespan shuts down (uvicorn
    re-raises SIGTERM once it has stopped, so nothing after `run` would get to write them)."""

    def __init__(self, app: Any, path: str) -> None:
        self.app, self.path = app, path
        self.profiler = cProfile.Profile()
        self.profiler.enable()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "lifespan":
            await self.app(scope, receive, send)
            return

        async def sent(message: Any) -> None:
            if message["type"] == "lifespan.shutdown.complete":
                self.profiler.disable()
                self.profiler.dump_stats(self.path)
            await send(message)

        await self.app(scope, receive, sent)


if __name__ == "__main__":
    main()
