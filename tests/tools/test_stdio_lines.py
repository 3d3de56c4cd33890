"""MCP over stdio, line by line, through a real subprocess: a line that is no message is
answered (id null) and the session goes on; requests read before stdin closes are answered."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import httpx

from core.uow import Database
from tests.conftest import signup

ROOT = Path(__file__).resolve().parents[2]
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {
        "protocolVersion": "2025-06-18",
        "capabilities": {},
        "clientInfo": {"name": "t", "version": "0"},
    },
}


async def _server(db: Database, token: str) -> asyncio.subprocess.Process:
    settings = db.settings
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "servers.cli",
        "mcp",
        cwd=str(ROOT),
        env={
            "ATLILITH_TOKEN": token,
            "DATABASE_URL": settings.database_url or "",
            "ATLILITH_JWT_SECRET": settings.jwt_secret or "",
            "ATLILITH_DATA_DIR": str(settings.data_dir),
            "ATLILITH_LOG_LEVEL": "warning",
            "PYTHONPATH": str(ROOT),
            "PATH": "/usr/bin:/bin",
        },
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def _reply(proc: asyncio.subprocess.Process) -> dict[str, Any]:
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), 60)
    assert line, "the server closed stdout"
    answer: dict[str, Any] = json.loads(line)
    return answer


async def test_a_line_that_is_no_message_is_answered_and_the_session_goes_on(
    db: Database, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    proc = await _server(db, a.token)
    assert proc.stdin is not None
    lines = [b"this is not json", b"", b'{"not": "a message"}', json.dumps(INITIALIZE).encode()]
    proc.stdin.write(b"\n".join(lines) + b"\n")
    await proc.stdin.drain()
    replies = [await _reply(proc) for _ in range(3)]
    proc.stdin.close()
    assert await asyncio.wait_for(proc.wait(), 60) == 0
    assert replies[0] == {"jsonrpc": "2.0", "id": None, "error": {"code": -32700, "message": "Parse error"}}
    # JSON, but no JSON-RPC message; the blank line before it is no message at all.
    assert replies[1] == {
        "jsonrpc": "2.0",
        "id": None,
        "error": {"code": -32600, "message": "Invalid Request"},
    }
    assert replies[2]["id"] == 1 and "result" in replies[2]


async def test_requests_read_before_stdin_closes_are_answered(
    db: Database, client: httpx.AsyncClient
) -> None:
    """A client that writes its requests and closes its end gets every answer, and no query is
    cancelled under the server (asyncpg then logged "Future exception was never retrieved")."""
    a = await signup(client)
    proc = await _server(db, a.token)
    assert proc.stdin is not None
    calls = [
        {
            "jsonrpc": "2.0",
            "id": 10 + i,
            "method": "tools/call",
            "params": {"name": "whoami", "arguments": {}},
        }
        for i in range(20)
    ]
    messages = [INITIALIZE, {"jsonrpc": "2.0", "method": "notifications/initialized"}, *calls]
    proc.stdin.write(b"".join(json.dumps(m).encode() + b"\n" for m in messages))
    proc.stdin.close()
    out, err = await asyncio.wait_for(proc.communicate(), 120)
    answers = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["id"] for r in answers) == [1, *range(10, 30)]
    assert all("result" in r and not r["result"].get("isError") for r in answers), answers
    assert b"never retrieved" not in err and b"connection_lost" not in err, err.decode()
    assert proc.returncode == 0
