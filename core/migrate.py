"""Database set-up: roles, schemas, Alembic migrations and the app role's grants.

Migrations run as the owner role (objects belong to it); the app connects as a separate
non-superuser role, so row-level security applies to every query it makes.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.engine import URL
from sqlalchemy.ext.asyncio import create_async_engine

from core import secret_binding
from core.config import Settings
from core.db import asyncpg_url, component_schemas
from core.observability import get_logger

log = get_logger("atlilith.migrate")
# The key that signs tenant contexts lives here; no role but the owner may read it.
PRIVATE_SCHEMA = "platform_private"
# Alembic's version table lives apart from component schemas; the app role gets no grant on it.
META_SCHEMA = "atlilith_meta"
MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _ident(name: str) -> str:
    if not name.replace("_", "").isalnum():
        raise ValueError(f"unsafe SQL identifier {name!r}")
    return f'"{name}"'


def alembic_config(schemas: tuple[str, ...] | None = None) -> Config:
    from core.features import load_models

    load_models()
    cfg = Config()
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("version_locations", str(MIGRATIONS_DIR / "versions"))
    cfg.attributes["schemas"] = schemas or component_schemas()
    return cfg


async def create_database(admin_url: str | URL, name: str) -> None:
    """CREATE DATABASE on the server of `admin_url` (tests give each session its own)."""
    await _on_server(admin_url, f"CREATE DATABASE {_ident(name)}")


async def drop_database(admin_url: str | URL, name: str) -> None:
    await _on_server(admin_url, f"DROP DATABASE IF EXISTS {_ident(name)} WITH (FORCE)")


async def _on_server(admin_url: str | URL, statement: str) -> None:
    # CREATE / DROP DATABASE cannot run inside a transaction: autocommit, on a throwaway engine.
    engine = create_async_engine(asyncpg_url(admin_url), isolation_level="AUTOCOMMIT")
    try:
        async with engine.connect() as conn:
            await conn.execute(text(statement))
    finally:
        await engine.dispose()


def _setup_roles(sync_conn: Connection, settings: Settings) -> None:
    if len({settings.db_owner_role, settings.db_app_role, settings.db_system_role}) < 3:
        raise RuntimeError(
            "the owner, app and system database roles must be three different roles: set"
            " ATLILITH_DB_OWNER_ROLE, ATLILITH_DB_APP_ROLE and ATLILITH_DB_SYSTEM_ROLE apart"
        )
    owner, app, system = settings.db_owner_role, settings.db_app_role, settings.db_system_role
    me = sync_conn.execute(
        text("SELECT current_user, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user")
    ).one()
    db = sync_conn.execute(text("SELECT current_database()")).scalar_one()
    can_create = bool(me.rolsuper or me.rolcreaterole)
    existing = set(
        sync_conn.execute(
            text("SELECT rolname FROM pg_roles WHERE rolname = ANY(:names)"), {"names": [owner, app, system]}
        ).scalars()
    )
    if can_create:
        for role, login in ((owner, False), (app, True), (system, True)):
            if role in existing or role == me.current_user:
                continue
            # Another process (a parallel test session) may create it first: tolerate that.
            sync_conn.execute(
                text(
                    "DO $$ BEGIN "
                    f"CREATE ROLE {_ident(role)} {'LOGIN' if login else 'NOLOGIN'} NOSUPERUSER NOBYPASSRLS"
                    " NOCREATEDB NOCREATEROLE; EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                )
            )
        for role, password in ((app, settings.app_db_password), (system, settings.system_db_password)):
            if password:
                sync_conn.execute(text(f"ALTER ROLE {_ident(role)} PASSWORD :pw").bindparams(pw=password))
        if me.current_user != owner and not me.rolsuper:
            sync_conn.execute(text(f"GRANT {_ident(owner)} TO {_ident(me.current_user)}"))
    else:
        missing = {owner, app, system} - existing - {me.current_user}
        if missing:
            raise RuntimeError(
                f"roles {sorted(missing)} do not exist and {me.current_user!r} may not create them; "
                "create them as described in README (Database roles) and run migrate again"
            )
    if me.current_user != owner:
        sync_conn.execute(text(f"GRANT CONNECT, CREATE ON DATABASE {_ident(db)} TO {_ident(owner)}"))
    sync_conn.execute(text(f"GRANT CONNECT ON DATABASE {_ident(db)} TO {_ident(app)}, {_ident(system)}"))
    sync_conn.execute(text("CREATE EXTENSION IF NOT EXISTS btree_gist"))
    sync_conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))


def _grant_app(sync_conn: Connection, settings: Settings) -> None:
    """Give the app and system roles DML (never DDL, never ownership) on every schema the owner
    owns, except the private one holding the key that signs tenant contexts; and tell the
    policies which role is the system role."""
    schemas = sync_conn.execute(
        text(
            "SELECT nspname FROM pg_namespace n JOIN pg_roles r ON r.oid = n.nspowner"
            " WHERE r.rolname = :owner AND nspname NOT IN (:meta, :private)"
        ),
        {"owner": settings.db_owner_role, "meta": META_SCHEMA, "private": PRIVATE_SCHEMA},
    ).scalars()
    roles = f"{_ident(settings.db_app_role)}, {_ident(settings.db_system_role)}"
    for schema in schemas:
        s = _ident(schema)
        sync_conn.execute(text(f"GRANT USAGE ON SCHEMA {s} TO {roles}"))
        sync_conn.execute(
            text(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {roles}")
        )
        sync_conn.execute(text(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA {s} TO {roles}"))
        sync_conn.execute(text(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {s} FROM PUBLIC"))
        sync_conn.execute(text(f"GRANT EXECUTE ON ALL FUNCTIONS IN SCHEMA {s} TO {roles}"))
    sync_conn.execute(text(f"REVOKE ALL ON ALL FUNCTIONS IN SCHEMA {PRIVATE_SCHEMA} FROM PUBLIC"))
    sync_conn.execute(
        text(f"UPDATE {PRIVATE_SCHEMA}.context_key SET system_role = :role"),
        {"role": settings.db_system_role},
    )


def _migrate_sync(sync_conn: Connection, settings: Settings, revision: str, rebind: bool = False) -> None:
    _setup_roles(sync_conn, settings)
    sync_conn.commit()
    current = sync_conn.execute(text("SELECT current_user")).scalar_one()
    if current != settings.db_owner_role:
        sync_conn.execute(text(f"SET ROLE {_ident(settings.db_owner_role)}"))
        sync_conn.commit()  # SET ROLE is session-wide; Alembic opens its own transactions
    sync_conn.execute(text(f"CREATE SCHEMA IF NOT EXISTS {META_SCHEMA}"))
    sync_conn.commit()
    cfg = alembic_config()
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, revision)
    sync_conn.commit()
    _grant_app(sync_conn, settings)
    sync_conn.commit()
    if rebind:
        secret_binding.rebind_secrets(sync_conn, settings)
        sync_conn.commit()
    sync_conn.execute(text("RESET ROLE"))
    sync_conn.commit()


async def ensure_roles(settings: Settings) -> None:
    """Create the owner and app roles (when allowed), database grants and extensions, without
    migrating: what a restore needs before it loads a dump that names those roles."""
    if not settings.database_url:
        raise RuntimeError("no database configured")
    engine = create_async_engine(asyncpg_url(settings.database_url))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_setup_roles, settings)
            await conn.commit()
    finally:
        await engine.dispose()


async def migrate(settings: Settings, revision: str = "heads", *, rebind_secrets: bool = False) -> None:
    """Create roles (when allowed), migrate as the owner role, grant the app role. Idempotent.
    `rebind_secrets`: record this process's secrets as the database's (a deliberate rotation)."""
    if not settings.database_url:
        raise RuntimeError("no database configured")
    engine = create_async_engine(asyncpg_url(settings.database_url))
    try:
        async with engine.connect() as conn:
            await conn.run_sync(_migrate_sync, settings, revision, rebind_secrets)
    finally:
        await engine.dispose()
    log.info("migrated", revision=revision)
