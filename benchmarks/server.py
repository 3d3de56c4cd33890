"""The bench server: the real app, plus bare baseline routes dispatched before it (no FastAPI,
no middleware, no ORM, no RLS) doing the same lookups with raw asyncpg."""

from __future__ import annotations

import json
import uuid
from typing import Any

import asyncpg
import jwt
import uvicorn
from starlette.types import Receive, Scope, Send

from core.config import get_settings
from core.db import asyncpg_dsn
from servers.app import create_app

ME_SQL = """
SELECT p.id, p.slug, p.display_name, p.email, m.role, m.created_at, o.id AS org_id, o.slug AS org_slug, o.name
  FROM platform.persons p
  LEFT JOIN platform.org_members m ON m.person_id = p.id
  LEFT JOIN platform.orgs o ON o.id = m.org_id
 WHERE p.id = $1 AND p.status = 'active'
"""


class Bare:
    """GET /bench/bare/me: verify the JWT, fetch person and memberships in one statement."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.settings = get_settings()
        self.pool: asyncpg.Pool | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http" or scope["path"] != "/bench/bare/me":
            await self.app(scope, receive, send)
            return
        if self.pool is None:
            # The owner/admin URL: the floor, without RLS or per-request settings.
            self.pool = await asyncpg.create_pool(
                asyncpg_dsn(self.settings.database_url or ""), min_size=2, max_size=10
            )
        headers = dict(scope["headers"])
        token = headers.get(b"authorization", b"").decode().removeprefix("Bearer ")
        try:
            claims = jwt.decode(
                token,
                self.settings.jwt_secret or "",
                algorithms=["HS256"],
                audience=self.settings.jwt_audience,
            )
        except jwt.PyJWTError:
            await _send(send, 401, {"error": "unauthenticated"})
            return
        rows = await self.pool.fetch(ME_SQL, uuid.UUID(claims["sub"]))
        if not rows:
            await _send(send, 401, {"error": "unauthenticated"})
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
        }
        await _send(send, 200, body, statements=1)


async def _send(send: Send, status: int, body: dict[str, Any], statements: int = 0) -> None:
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
    app = Bare(create_app(settings))
    uvicorn.run(
        app, host="127.0.0.1", port=settings.port, log_level="warning", access_log=False, lifespan="on"
    )


if __name__ == "__main__":
    main()
