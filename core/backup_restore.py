"""Restoring a backup: plan, refuse what would lose data, load, prove, migrate."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from core.backup_manifest import (
    DUMP_FILE,
    MANIFEST_FILE,
    BackupError,
    Manifest,
    RestoreRefused,
    TableStat,
    sha256_of,
)
from core.backup_postgres import (
    PgTool,
    check_can_read_everything,
    connect,
    libpq_env,
    pick_tool,
    quote_ident,
    run_tool,
    table_stats,
)
from core.config import Settings
from core.db import asyncpg_url
from core.observability import get_logger

log = get_logger("atlilith.backup")


@dataclass
class RestorePlan:
    source: Path
    manifest: Manifest
    target_database: str
    create_database: bool
    existing_schemas: list[str]
    existing_tables: int
    archive_entries: int
    pg_restore: PgTool

    @property
    def empty(self) -> bool:
        return not self.existing_schemas and self.existing_tables == 0


@dataclass
class RestoreResult:
    plan: RestorePlan
    restored: bool
    mismatches: list[str]
    duration_seconds: float


def resolve_source(source: Path) -> tuple[Path, Manifest]:
    folder = source.parent if source.is_file() else source
    manifest_path = folder / MANIFEST_FILE
    if not manifest_path.is_file():
        raise BackupError(f"{folder} holds no {MANIFEST_FILE}: give the backup's folder")
    manifest = Manifest.read(manifest_path)
    dump = folder / str(manifest.dump.get("file", DUMP_FILE))
    if not dump.is_file():
        raise BackupError(f"{dump} is missing")
    actual = sha256_of(dump)
    if actual != manifest.dump.get("sha256"):
        raise BackupError(
            f"{dump} is damaged: sha256 {actual[:12]}… differs from the manifest's "
            f"{str(manifest.dump.get('sha256'))[:12]}…; restore another backup"
        )
    return folder, manifest


async def _existing(conn: asyncpg.Connection, schemas: list[str]) -> tuple[list[str], int]:
    present = await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname = ANY($1::text[])", schemas)
    tables = await conn.fetchval(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        " WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')"
        " AND n.nspname NOT LIKE 'pg\\_%'"
        " AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')"
    )
    return sorted(r["nspname"] for r in present), int(tables)


async def database_exists(admin: URL, name: str) -> bool:
    async with connect(admin.set(database="postgres")) as conn:
        return bool(await conn.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name))


def target_settings(settings: Settings, database: str | None) -> Settings:
    if not settings.database_url:
        raise BackupError("no database configured")
    if database is None:
        return settings
    url = asyncpg_url(settings.database_url).set(database=database)
    update: dict[str, Any] = {"database_url": url.render_as_string(hide_password=False)}
    if settings.app_database_url:
        app = asyncpg_url(settings.app_database_url).set(database=database)
        update["app_database_url"] = app.render_as_string(hide_password=False)
    return settings.model_copy(update=update)


async def plan_restore(settings: Settings, source: Path, database: str | None = None) -> RestorePlan:
    """Everything a restore would do, checked, with nothing changed (the dry run)."""
    folder, manifest = resolve_source(source)
    target = target_settings(settings, database)
    url = asyncpg_url(target.database_url or "")
    name = str(url.database)
    create = database is not None and not await database_exists(url, name)
    conn_url = url.set(database="postgres") if create else url
    async with connect(conn_url) as conn:
        await check_can_read_everything(conn, "a restore")
        major = int(await conn.fetchval("SHOW server_version_num")) // 10000
        existing, tables = ([], 0) if create else await _existing(conn, manifest.schemas)
    if major < manifest.server_major:
        raise RestoreRefused(
            f"the backup comes from PostgreSQL {manifest.server_major}; this server is {major}."
            " Restore into a server of the same or a newer major version."
        )
    if manifest.owner_role != target.db_owner_role:
        raise RestoreRefused(
            f"the backup's objects belong to role {manifest.owner_role!r} but this deployment's owner role is"
            f" {target.db_owner_role!r}; set ATLILITH_DB_OWNER_ROLE={manifest.owner_role} to restore it"
        )
    tool = pick_tool("pg_restore", settings, major, at_least=int(manifest.pg_dump.get("major", major)))
    listing = await run_tool(tool, ["--list", str(folder / DUMP_FILE)], libpq_env(url), limit_s=120)
    entries = sum(1 for line in listing.splitlines() if line and not line.startswith(";"))
    return RestorePlan(
        source=folder,
        manifest=manifest,
        target_database=name,
        create_database=create,
        existing_schemas=existing,
        existing_tables=tables,
        archive_entries=entries,
        pg_restore=tool,
    )


async def restore(
    settings: Settings,
    source: Path,
    *,
    database: str | None = None,
    force: bool = False,
    dry_run: bool = False,
) -> RestoreResult:
    """Restore a backup into the configured database (or `database` on the same server,
    created if missing), verify it against the manifest, and migrate it."""
    from core.migrate import create_database, ensure_roles, migrate

    started = time.perf_counter()
    plan = await plan_restore(settings, source, database)
    if not plan.empty and not force:
        raise RestoreRefused(
            f"database {plan.target_database!r} is not empty (schemas {plan.existing_schemas or 'none'},"
            f" {plan.existing_tables} tables): restore into a new database with --into NAME, or pass"
            " --force to replace the backup's schemas (the current ones are kept until the restore succeeds)"
        )
    if dry_run:
        return RestoreResult(plan, False, [], round(time.perf_counter() - started, 3))
    target = target_settings(settings, database)
    url = asyncpg_url(target.database_url or "")
    if plan.create_database:
        await create_database(url.set(database="postgres"), plan.target_database)
    await ensure_roles(target)
    stamp = f"{int(time.time())}"
    moved = await _set_aside(url, plan.existing_schemas, stamp) if plan.existing_schemas else {}
    try:
        await run_tool(
            plan.pg_restore,
            [
                "--single-transaction",
                "--exit-on-error",
                f"--dbname={plan.target_database}",
                str(source_dump(plan)),
            ],
            libpq_env(url),
            limit_s=3600,
        )
    except BaseException:
        if moved:
            await _put_back(url, moved)
        raise
    if moved:
        await _drop(url, list(moved.values()))
    async with connect(url) as conn:
        stats = await table_stats(conn, plan.manifest.schemas)
    mismatches = compare(plan.manifest.tables, stats)
    if not mismatches:
        # Re-grants the app role (on this server), and upgrades an older backup to this build.
        await migrate(target)
    log.info("restore_done", database=plan.target_database, mismatches=len(mismatches))
    return RestoreResult(plan, True, mismatches, round(time.perf_counter() - started, 3))


def source_dump(plan: RestorePlan) -> Path:
    return plan.source / str(plan.manifest.dump.get("file", DUMP_FILE))


def compare(expected: dict[str, TableStat], actual: dict[str, TableStat]) -> list[str]:
    problems: list[str] = []
    for name in sorted(set(expected) | set(actual)):
        want, got = expected.get(name), actual.get(name)
        if want is None:
            problems.append(f"{name}: not in the backup")
        elif got is None:
            problems.append(f"{name}: missing after restore")
        elif want.rows != got.rows:
            problems.append(f"{name}: {got.rows} rows, the backup has {want.rows}")
        elif want.md5 != got.md5:
            problems.append(f"{name}: same row count, different content (md5)")
    return problems


async def _set_aside(url: URL, schemas: list[str], stamp: str) -> dict[str, str]:
    """Rename the schemas a forced restore replaces; they come back if the restore fails."""
    moved = {s: f"{s}_pre_restore_{stamp}"[:63] for s in schemas}
    async with connect(url) as conn, conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        try:
            for old, new in moved.items():
                await conn.execute(f"ALTER SCHEMA {quote_ident(old)} RENAME TO {quote_ident(new)}")
        except asyncpg.LockNotAvailableError as exc:
            raise BackupError(
                "the database is in use (a lock was not granted in 10 s): stop the app (./run dev:stop,"
                " or docker compose stop app) and restore again"
            ) from exc
    return moved


async def _put_back(url: URL, moved: dict[str, str]) -> None:
    async with connect(url) as conn, conn.transaction():
        for old, new in moved.items():
            await conn.execute(f"DROP SCHEMA IF EXISTS {quote_ident(old)} CASCADE")
            await conn.execute(f"ALTER SCHEMA {quote_ident(new)} RENAME TO {quote_ident(old)}")


async def _drop(url: URL, schemas: list[str]) -> None:
    async with connect(url) as conn, conn.transaction():
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA {quote_ident(schema)} CASCADE")
