"""Backups and restores of every component schema, with a manifest that proves the copy.

`backup` takes one consistent snapshot: a REPEATABLE READ transaction exports it, counts and
checksums every table inside it, and `pg_dump --snapshot` dumps exactly that state (custom
format, compressed). The manifest records the time, the Alembic revisions, rows and an md5 per
table, and the dump's sha256. `restore` refuses a damaged dump or a non-empty target (unless
`force`), recreates the roles, loads the dump in one transaction, recomputes every table's rows
and checksum and compares them with the manifest, then runs the migrations (idempotent: they
re-grant the app role and bring an older backup up to this build's schema).

The schemas are discovered, not listed: every schema owned by the owner role (the one that
runs migrations), `atlilith_meta` included, so a new component is backed up with no change here.

Taking, listing and pruning backups live here; restoring in `core.backup_restore`, the files on
disk and the proof in `core.backup_manifest`, the PostgreSQL client tools, connections and table
checksums in `core.backup_postgres`. Callers use this module only: it re-exports what they need.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import time
from pathlib import Path

import asyncpg

from core import __version__
from core.backup_manifest import (
    DUMP_FILE,
    INDEX_FILE,
    MANIFEST_FILE,
    MANIFEST_FORMAT,
    BackupError,
    BackupResult,
    Manifest,
    RestoreRefused,
    TableStat,
    sha256_of,
)
from core.backup_postgres import (
    PgTool,
    alembic_revisions,
    available_tools,
    check_can_read_everything,
    connect,
    libpq_env,
    owned_schemas,
    pick_tool,
    run_tool,
    table_stats,
)
from core.backup_restore import (
    RestorePlan,
    RestoreResult,
    compare,
    database_exists,
    plan_restore,
    resolve_source,
    restore,
    source_dump,
    target_settings,
)
from core.config import Settings
from core.db import asyncpg_url
from core.observability import get_logger

__all__ = [
    "DUMP_FILE",
    "INDEX_FILE",
    "MANIFEST_FILE",
    "MANIFEST_FORMAT",
    "BackupError",
    "BackupResult",
    "Manifest",
    "PgTool",
    "RestorePlan",
    "RestoreRefused",
    "RestoreResult",
    "TableStat",
    "available_tools",
    "backup",
    "compare",
    "connect",
    "database_exists",
    "known_backups",
    "libpq_env",
    "list_backups",
    "owned_schemas",
    "pick_tool",
    "plan_restore",
    "prune",
    "record_in_index",
    "resolve_source",
    "restore",
    "sha256_of",
    "source_dump",
    "table_stats",
    "target_settings",
]

log = get_logger("atlilith.backup")


async def backup(settings: Settings, out_dir: Path | None = None, *, keep: int | None = None) -> BackupResult:
    """Dump every owner-owned schema into `<out>/<UTC time>-<db>/` with its manifest."""
    if not settings.database_url:
        raise BackupError("no database configured")
    started = time.perf_counter()
    out_dir = (out_dir or settings.backup_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    url = asyncpg_url(settings.database_url)
    async with connect(url) as conn:
        await check_can_read_everything(conn, "a backup")
        server_version, major = await _server_version(conn)
        tool = pick_tool("pg_dump", settings, major)
        schemas = await owned_schemas(conn, settings.db_owner_role)
        if not schemas:
            raise BackupError(
                f"no schema is owned by {settings.db_owner_role!r}:"
                " is this database migrated (atlilith migrate)?"
            )
        now = dt.datetime.now(dt.UTC)
        database = str(await conn.fetchval("SELECT current_database()"))
        final, partial = _folders(out_dir, f"{now:%Y%m%dT%H%M%S%fZ}-{database}")
        try:
            # One snapshot for the manifest and the dump: what is counted is what is dumped.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
                stats = await table_stats(conn, schemas)
                revisions = await alembic_revisions(conn, schemas)
                args = ["--format=custom", f"--snapshot={snapshot}", "--lock-wait-timeout=30000"]
                args += [f"--schema={s}" for s in schemas]
                args += [f"--file={partial / DUMP_FILE}"]
                await run_tool(tool, args, libpq_env(url), limit_s=3600)
            manifest = Manifest(
                format=MANIFEST_FORMAT,
                created_at=now.isoformat(),
                atlilith_version=__version__,
                database=database,
                server_version=server_version,
                server_major=major,
                pg_dump={"path": str(tool.path), "version": tool.version, "major": str(tool.major)},
                owner_role=settings.db_owner_role,
                app_role=settings.db_app_role,
                schemas=schemas,
                alembic_revisions=revisions,
                tables=stats,
            )
            _seal(partial, manifest, started)
            # Only a complete backup ever carries its final name.
            partial.rename(final)
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            raise
    pruned = prune(out_dir, keep) if keep else []
    if out_dir != settings.backup_dir.resolve():
        record_in_index(settings.backup_dir.resolve(), final)
    log.info("backup_done", path=str(final), tables=len(stats), rows=manifest.total_rows)
    return BackupResult(final, manifest, pruned)


def _folders(out_dir: Path, name: str) -> tuple[Path, Path]:
    """The backup's final folder (must not exist) and the empty folder it is written in first."""
    final = out_dir / name
    partial = out_dir / f".{name}.partial"
    if final.exists():
        raise BackupError(f"{final} already exists")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir()
    return final, partial


async def _server_version(conn: asyncpg.Connection) -> tuple[str, int]:
    """The server's version text (e.g. 16.4) and major version."""
    version_num = int(await conn.fetchval("SHOW server_version_num"))
    server_version = str(await conn.fetchval("SHOW server_version")).split()[0]
    return server_version, version_num // 10000


def _seal(partial: Path, manifest: Manifest, started: float) -> None:
    """Record the dump's size and checksum and the duration, and write the manifest."""
    dump = partial / DUMP_FILE
    manifest.dump = {"file": DUMP_FILE, "bytes": dump.stat().st_size, "sha256": sha256_of(dump)}
    manifest.duration_seconds = round(time.perf_counter() - started, 3)
    (partial / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")


def list_backups(out_dir: Path) -> list[Path]:
    """Complete backups in a folder, oldest first."""
    if not out_dir.is_dir():
        return []
    return sorted(
        p
        for p in out_dir.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / MANIFEST_FILE).is_file()
    )


def _is_backup(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST_FILE).is_file()


def _indexed(index_dir: Path) -> list[Path]:
    try:
        entries = json.loads((index_dir / INDEX_FILE).read_text(encoding="utf-8"))["backups"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [Path(e) for e in entries if isinstance(e, str)]


def record_in_index(index_dir: Path, backup_path: Path) -> None:
    """Remember a backup written outside the default folder (entries whose backup is gone are
    dropped on the way). Written whole, then renamed: a reader never sees half an index."""
    index_dir.mkdir(parents=True, exist_ok=True)
    kept = [p for p in _indexed(index_dir) if _is_backup(p) and p != backup_path]
    entries = [str(p) for p in [*kept, backup_path.resolve()]]
    tmp = index_dir / f".{INDEX_FILE}.{os.getpid()}.{time.monotonic_ns()}.tmp"
    tmp.write_text(json.dumps({"backups": entries}, indent=2) + "\n", encoding="utf-8")
    tmp.replace(index_dir / INDEX_FILE)


def known_backups(backup_dir: Path) -> list[Path]:
    """Complete backups in the default folder and those its index names, oldest first (a
    backup's folder name starts with its UTC time)."""
    found = {p.resolve() for p in list_backups(backup_dir)}
    found.update(p.resolve() for p in _indexed(backup_dir) if _is_backup(p))
    return sorted(found, key=lambda p: (p.name, str(p)))


def prune(out_dir: Path, keep: int) -> list[Path]:
    """Delete the oldest complete backups beyond the newest `keep`."""
    if keep < 1:
        raise BackupError("keep at least one backup")
    doomed = list_backups(out_dir)[:-keep]
    for path in doomed:
        shutil.rmtree(path)
    return doomed
