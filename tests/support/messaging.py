"""Messaging test helpers: a fake peer on 127.0.0.1 and an app whose platform allows it."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
from standardwebhooks import Webhook
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from core.uow import Database
from tests.conftest import Account
from tests.support.serving import LocalServer
from tests.support.sql import system_sql

PEER_SECRET = "whsec_cGVlci1zZWNyZXQtZm9yLXRlc3RzLW5ld2VzdC1rZXk="
# The key being rotated out: during the overlap every request carries both signatures.
PEER_SECRET_OLD = "whsec_cGVlci1zZWNyZXQtZm9yLXRlc3RzLW9sZGVyLWtleQ=="


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    raw: bytes


@dataclass
class FakePeer(LocalServer):
    """A drafting and delivery peer: records every request; `script` decides each answer."""

    received: list[Received] = field(default_factory=list)
    # Called with the request; returns (status, json body). Default: a draft / an accepted delivery.
    script: Callable[[Received], tuple[int, Any]] | None = None
    delay: float = 0.0

    def __post_init__(self) -> None:
        async def handle(request: Request) -> Response:
            raw = await request.body()
            item = Received(request.url.path, dict(request.headers), json.loads(raw or b"{}"), raw)
            self.received.append(item)
            if self.delay:
                await asyncio.sleep(self.delay)
            status, body = (self.script or self.default)(item)
            if isinstance(body, str):
                return Response(body, status_code=status, media_type="text/plain")
            return JSONResponse(body, status_code=status)

        self.app = Starlette(routes=[Route("/{path:path}", handle, methods=["POST"])])
        self.listen(self.app)

    @staticmethod
    def default(item: Received) -> tuple[int, Any]:
        if item.path.startswith("/draft"):
            last = next((h["text"] for h in reversed(item.body["history"]) if h["role"] == "client"), "")
            return 200, {"body": f"Thanks! About: {last[:40]}", "model": "fake-1"}
        return 200, {"external_id": f"peer-{item.body['message_id']}"}

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def signature_ok(self, item: Received) -> bool:
        """Whether the request verifies as a Standard Webhooks receiver checks it, for a receiver
        holding the newest key and for one still holding the old one, and not for another key."""

        def verifies(key: str) -> bool:
            try:
                Webhook(key).verify(item.raw, item.headers, json_parse=False)
            except Exception:
                return False
            return True

        stranger = "whsec_c29tZS1vdGhlci1rZXktbm90LW91cnMtYXQtYWxs"
        return verifies(PEER_SECRET) and verifies(PEER_SECRET_OLD) and not verifies(stranger)


def messaging_db(db: Database, **overrides: Any) -> Database:
    """The test database, with a platform that lets contexts use peers on 127.0.0.1."""
    settings = db.settings.model_copy(
        update={
            "messaging_peer_allowed_hosts": ["127.0.0.1:*"],
            "messaging_peer_secret": f"{PEER_SECRET}, {PEER_SECRET_OLD}",
            "messaging_peer_timeout_seconds": 2.0,
            "messaging_peer_retries": 1,
            **overrides,
        }
    )
    return Database(settings)


@asynccontextmanager
async def messaging_database(db: Database, **overrides: Any) -> AsyncIterator[Database]:
    """`messaging_db`, its engine disposed of on the way out."""
    database = messaging_db(db, **overrides)
    try:
        yield database
    finally:
        await database.dispose()


async def api_key(client: httpx.AsyncClient, who: Account, scopes: list[str], org: str | None = None) -> str:
    body: dict[str, Any] = {"name": "agent", "scopes": scopes}
    if org:
        body["org"] = org
    r = await client.post("/v1/api-keys", json=body, headers=who.h())
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


async def inbound(
    client: httpx.AsyncClient, headers: dict[str, str], *, expect: int = 200, **fields: Any
) -> dict[str, Any]:
    body = {"channel": "email", "client_email": "ada@example.com", "body": "Hello", **fields}
    body.setdefault("external_id", f"<{hashlib.sha1(json.dumps(body, sort_keys=True).encode()).hexdigest()}>")
    r = await client.post("/v1/messaging/inbound", json=body, headers=headers)
    assert r.status_code == expect, r.text
    return dict(r.json())


async def thread_detail(client: httpx.AsyncClient, headers: dict[str, str], thread_id: str) -> dict[str, Any]:
    """The thread and its first 100 messages, as REST answers them."""
    r = await client.get(f"/v1/messaging/threads/{thread_id}?limit=100", headers=headers)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def outbox(db: Database, name: str, **match: str) -> list[dict[str, Any]]:
    """Events of this name whose data contains `match`, oldest first."""
    rows = await system_sql(
        db,
        "SELECT data FROM platform.outbox WHERE name = :n AND data @> CAST(:m AS jsonb) ORDER BY seq",
        {"n": name, "m": json.dumps(match)},
    )
    return [dict(r) for r in rows.scalars()]
