"""Backups and the restore drill: seed every feature, back up, restore into a fresh database,
compare every table's rows and checksum, and run the app against the restored copy — on the
CI server (PostgreSQL 15, DATABASE_URL) and on the embedded PostgreSQL 18."""

from __future__ import annotations

import os
import secrets
import shutil
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from core import backup as ops
from core.config import Settings
from core.db import asyncpg_url
from core.migrate import alembic_config, create_database, drop_database, migrate
from core.uow import Database, app_database_url
from tests.conftest import app_settings
from tests.support.demo import SEED_PASSWORD, seed_everything
from tests.support.serving import app_client

ROOT = Path(__file__).resolve().parents[2]


def settings_for(base: Settings, database: str) -> Settings:
    url = make_url(base.database_url or "").set(database=database).render_as_string(hide_password=False)
    return base.model_copy(update={"database_url": url})


async def fresh_seeded(base: Settings, name: str) -> Settings:
    await create_database(base.database_url or "", name)
    s = settings_for(base, name)
    await migrate(s)
    db = Database(s)
    try:
        seeded = await seed_everything(db)
    finally:
        await db.dispose()
    assert "tenancy" in seeded
    return s


@pytest.fixture
async def source(settings: Settings) -> AsyncIterator[Settings]:
    name = f"atl_drill_{secrets.token_hex(3)}"
    s = await fresh_seeded(settings, name)
    try:
        yield s
    finally:
        for db in (name, f"{name}_restored"):
            await drop_database(settings.database_url or "", db)


async def count(settings: Settings, sql: str) -> int:
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(sql))).scalar_one())
    finally:
        await engine.dispose()


def applied_heads() -> set[str]:
    """What alembic_version holds once the database is at `heads`: every head, except a head that
    another head's migration depends on (alembic then records the dependent one in its place,
    e.g. billing_0001 under webhooks_0001)."""
    script = ScriptDirectory.from_config(alembic_config())
    heads = set(script.get_heads())
    needed: set[str] = set()
    # Any revision's dependency, not only a head's: security_0002 sits on security_0001, which
    # depends on 0003.
    for revision in script.walk_revisions():
        deps = revision.dependencies or ()
        needed.update((deps,) if isinstance(deps, str) else deps)
    return heads - needed


async def drill(s: Settings, out: Path, expect_major: int | None = None) -> None:
    result = await ops.backup(s, out)
    m = result.manifest
    # The manifest: time, every head revision, every table of every owner-owned schema.
    assert set(m.alembic_revisions) == applied_heads()
    assert {"platform", "atlilith_meta"} <= set(m.schemas)
    assert "atlilith_meta.alembic_version" in m.tables and "platform.clients" in m.tables
    assert m.tables["platform.clients"].rows == await count(s, "SELECT count(*) FROM platform.clients") >= 7
    assert m.tables["platform.outbox"].rows > 0
    assert m.dump["sha256"] == ops.sha256_of(result.path / ops.DUMP_FILE)
    assert int(m.pg_dump["major"]) == m.server_major  # the matching client was chosen
    if expect_major is not None:
        assert m.server_major == expect_major
    target = f"{make_url(s.database_url or '').database}_restored"

    restored = await ops.restore(s, result.path, database=target)
    assert restored.restored and restored.plan.create_database and restored.mismatches == []
    copy = settings_for(s, target)
    # Recomputed independently: the copy is the backup, row for row.
    async with ops.connect(copy.database_url or "") as conn:
        assert ops.compare(m.tables, await ops.table_stats(conn, m.schemas)) == []
    await app_runs_on(copy)
    await rls_holds(copy)

    # A second restore onto the now non-empty copy is refused; --dry-run changes nothing.
    with pytest.raises(ops.RestoreRefused, match="not empty"):
        await ops.restore(s, result.path, database=target)
    before = await count(copy, "SELECT count(*) FROM platform.clients")
    dry = await ops.restore(s, result.path, database=target, force=True, dry_run=True)
    assert not dry.restored and dry.plan.existing_schemas
    assert await count(copy, "SELECT count(*) FROM platform.clients") == before

    # --force replaces the changed copy with the backup, and leaves no set-aside schema behind.
    await execute(copy, "DELETE FROM platform.clients WHERE name = 'Léa Martin'")
    forced = await ops.restore(s, result.path, database=target, force=True)
    assert forced.mismatches == []
    assert await count(copy, "SELECT count(*) FROM platform.clients") == m.tables["platform.clients"].rows
    assert await count(copy, "SELECT count(*) FROM pg_namespace WHERE nspname LIKE '%pre_restore%'") == 0


async def execute(s: Settings, sql: str) -> None:
    engine = create_async_engine(asyncpg_url(s.database_url or ""))
    try:
        async with engine.begin() as conn:
            await conn.execute(text(sql))
    finally:
        await engine.dispose()


async def app_runs_on(s: Settings) -> None:
    """The app, as its non-superuser role, signs in, reads and writes on the restored copy."""
    db = Database(s)
    try:
        async with app_client(db) as c:
            assert (await c.get("/health")).status_code == 200
            login = await c.post("/v1/auth/login", json={"login": "transquinnftw", "password": SEED_PASSWORD})
            assert login.status_code == 200, login.text
            h = {"Authorization": f"Bearer {login.json()['access_token']}", "X-Atlilith-Org": "cocotte"}
            names = {c["name"] for c in (await c.get("/v1/clients?limit=100", headers=h)).json()["items"]}
            assert {"Camille Laurent", "Léa Martin", "李雷"} <= names
            created = await c.post("/v1/clients", json={"name": "After Restore"}, headers=h)
            assert created.status_code == 201, created.text
            personal = await c.get("/v1/clients?limit=100", headers={"Authorization": h["Authorization"]})
            assert personal.status_code == 200 and "Léa Martin" not in {
                x["name"] for x in personal.json()["items"]
            }
    finally:
        await db.dispose()


async def rls_holds(s: Settings) -> None:
    """Row-level security survived the restore: the app role sees nothing without a context,
    and a person sees only their own rows."""
    engine = create_async_engine(asyncpg_url(app_database_url(s)))
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("SELECT current_user"))).scalar_one() == s.db_app_role
            assert (await conn.execute(text("SELECT count(*) FROM platform.clients"))).scalar_one() == 0
            ada = (
                await conn.execute(text("SELECT id FROM platform.persons WHERE slug = 'demo-ada'"))
            ).scalar_one_or_none()
        assert ada is None  # persons are not readable anonymously either
    finally:
        await engine.dispose()
    admin = create_async_engine(asyncpg_url(s.database_url or ""))
    try:
        async with admin.connect() as conn:
            ada = (
                await conn.execute(text("SELECT id FROM platform.persons WHERE slug = 'demo-ada'"))
            ).scalar_one()
            forced = (
                await conn.execute(
                    text(
                        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                        " WHERE n.nspname = 'platform' AND c.relkind = 'r' AND NOT c.relrowsecurity"
                    )
                )
            ).scalar_one()
        assert forced == 0  # every table still has RLS enabled
    finally:
        await admin.dispose()
    db = Database(s)
    try:
        async with db.service(ada, None) as uow:
            names = set((await uow.session.execute(text("SELECT name FROM platform.clients"))).scalars())
        assert names == {"Zoë Personnelle"}
    finally:
        await db.dispose()


async def test_restore_drill_on_the_configured_server(source: Settings, tmp_path: Path) -> None:
    await drill(source, tmp_path / "backups")


async def test_restore_drill_on_embedded_postgres_18() -> None:
    from core.embedded import DATABASE, ensure_database
    from core.embedded import start as start_embedded

    server = start_embedded(ROOT / ".atlilith" / "ops-drill")
    try:
        admin = server.url(DATABASE)
        await ensure_database(admin, DATABASE)
        base = app_settings(admin, data_dir=ROOT / ".atlilith" / "ops-drill")
        name = f"atl_drill_{secrets.token_hex(3)}"
        s = await fresh_seeded(base, name)
        out = ROOT / ".atlilith" / "ops-drill" / "backups"
        try:
            await drill(s, out, expect_major=18)
        finally:
            for db in (name, f"{name}_restored"):
                await drop_database(admin, db)
            shutil.rmtree(out, ignore_errors=True)
    finally:
        server.stop()


async def test_damaged_dumps_and_unprivileged_roles_are_refused(source: Settings, tmp_path: Path) -> None:
    result = await ops.backup(source, tmp_path, keep=5)
    dump = result.path / ops.DUMP_FILE
    data = bytearray(dump.read_bytes())
    data[len(data) // 2] ^= 0xFF
    dump.write_bytes(bytes(data))
    with pytest.raises(ops.BackupError, match="damaged"):
        await ops.restore(source, result.path, database="never_created_db")
    assert not await ops.database_exists(asyncpg_url(source.database_url or ""), "never_created_db")
    app_only = source.model_copy(update={"database_url": app_database_url(source)})
    with pytest.raises(ops.BackupError, match="superuser or a BYPASSRLS"):
        await ops.backup(app_only, tmp_path)
    # Retention keeps the newest N complete backups; an unfinished one never counts.
    (tmp_path / ".half.partial").mkdir()
    second = await ops.backup(source, tmp_path, keep=1)
    assert ops.list_backups(tmp_path) == [second.path] and second.pruned == [result.path]


def test_the_client_matching_the_server_major_is_chosen(tmp_path: Path) -> None:
    for major in (14, 16, 17):
        folder = tmp_path / f"pg{major}"
        folder.mkdir()
        tool = folder / "pg_dump"
        tool.write_text(f"#!/bin/sh\necho 'pg_dump (PostgreSQL) {major}.3'\n")
        tool.chmod(tool.stat().st_mode | stat.S_IEXEC)
    s16 = Settings(pg_bin_dir=tmp_path / "pg16")
    assert ops.pick_tool("pg_dump", s16, 16).path == tmp_path / "pg16" / "pg_dump"  # exact match
    s14 = Settings(pg_bin_dir=tmp_path / "pg14")
    chosen = ops.pick_tool("pg_dump", s14, 15)  # never older than the server
    assert chosen.major >= 15 and chosen.path.parent != tmp_path / "pg14"
    with pytest.raises(ops.BackupError, match="no pg_dump for PostgreSQL 99"):
        ops.pick_tool("pg_dump", s16, 99)
    assert os.access(tmp_path / "pg17" / "pg_dump", os.X_OK)


async def test_restore_latest_finds_a_backup_written_with_out(settings: Settings, tmp_path: Path) -> None:
    """`backup --out DIR` records the backup in the default folder's index; `restore latest`
    finds it there, and `restore latest --from DIR` looks in DIR itself."""
    import asyncio
    import subprocess
    import sys

    default, elsewhere = tmp_path / "default", tmp_path / "elsewhere"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLILITH_")}
    env.update(
        {
            "DATABASE_URL": settings.database_url or "",
            "ATLILITH_BACKUP_DIR": str(default),
            "PYTHONPATH": str(ROOT),
        }
    )

    def atlilith(*args: str) -> tuple[int, str]:
        done = subprocess.run(
            [sys.executable, "-m", "servers.cli", *args], cwd=ROOT, env=env, capture_output=True, text=True
        )
        said = done.stdout + done.stderr
        assert "Traceback" not in said, said
        return done.returncode, said

    code, out = await asyncio.to_thread(atlilith, "restore", "latest", "--dry-run")
    assert code == 2 and "no backups in" in out and "--from" in out, out
    code, out = await asyncio.to_thread(atlilith, "backup", "--out", str(elsewhere))
    assert code == 0, out
    [written] = ops.list_backups(elsewhere)
    assert ops.list_backups(default) == []  # the dump itself is where --out said

    target = f"{make_url(settings.database_url or '').database}_never"
    code, out = await asyncio.to_thread(atlilith, "restore", "latest", "--into", target, "--dry-run")
    assert code == 0 and f"backup {written}" in out and "dry run" in out, out
    code, out = await asyncio.to_thread(
        atlilith, "restore", "latest", "--from", str(elsewhere), "--into", target, "--dry-run"
    )
    assert code == 0 and f"backup {written}" in out, out
    code, out = await asyncio.to_thread(atlilith, "backup", "--list")
    assert code == 0 and str(written) in out, out
    # Once the backup is gone, the index no longer offers it.
    shutil.rmtree(written)
    code, out = await asyncio.to_thread(atlilith, "restore", "latest", "--dry-run")
    assert code == 2 and "no backups in" in out, out
    code, out = await asyncio.to_thread(atlilith, "restore", "latest", "--from", str(tmp_path / "empty"))
    assert code == 2 and "no backups in" in out, out
