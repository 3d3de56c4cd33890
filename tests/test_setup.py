"""Migrations, seed, configuration and skills."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from core.config import Settings
from core.db import Base, asyncpg_url, component_schemas
from core.features import load_models
from core.migrate import migrate
from core.uow import Database
from servers import client_cli
from tests.conftest import SEED_PASSWORD

ROOT = Path(__file__).resolve().parent.parent


async def test_models_match_the_migrations(db: Database, settings: Settings) -> None:
    """A model change without its migration (or the reverse) fails here, not in production."""
    from sqlalchemy.ext.asyncio import create_async_engine

    load_models()
    schemas = set(component_schemas())  # every component's schema, not only platform
    assert "platform" in schemas
    engine = create_async_engine(asyncpg_url(settings.database_url or ""))

    def diff(conn: object) -> list[object]:
        ctx = MigrationContext.configure(
            conn,  # type: ignore[arg-type]
            opts={
                "include_schemas": True,
                "compare_type": True,
                "include_name": lambda name, type_, parent: type_ != "schema" or name in schemas,
            },
        )
        return list(compare_metadata(ctx, Base.metadata))

    try:
        async with engine.connect() as conn:
            changes = await conn.run_sync(diff)
    finally:
        await engine.dispose()
    assert changes == []


async def test_migrate_is_idempotent_and_forward_only(settings: Settings) -> None:
    await migrate(settings)  # a second run changes nothing and does not fail
    for path in (ROOT / "migrations" / "versions").glob("*.py"):
        source = path.read_text()
        assert "def downgrade() -> None:\n    raise RuntimeError" in source, path.name


async def test_seed_is_idempotent_and_a_second_provider_needs_no_code(db: Database) -> None:
    from core.seed import seed

    first = await seed(db, SEED_PASSWORD)
    second = await seed(db, SEED_PASSWORD)
    assert (second.person_created, second.org_created, second.brands_created, second.clients_created) == (
        False,
        False,
        0,
        0,
    )
    assert first.generated_password is None
    async with db.system() as uow:
        rows = (await uow.session.execute(text("SELECT * FROM platform.orgs WHERE slug='cocotte'"))).all()
        domains = set(
            (
                await uow.session.execute(
                    text(
                        "SELECT d.domain FROM platform.brand_domains d JOIN platform.orgs o ON o.id = d.org_id WHERE o.slug = 'cocotte'"
                    )
                )
            ).scalars()
        )
        owner = (
            await uow.session.execute(
                text(
                    "SELECT p.slug FROM platform.orgs o JOIN platform.persons p ON p.id = o.owner_id WHERE o.slug = 'cocotte'"
                )
            )
        ).scalar_one()
    assert len(rows) == 1 and owner == "transquinnftw"
    assert domains == {"cocotte.maison", "sansonnet.maison"}


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://u@h:5/d")
    monkeypatch.setenv("ATLILITH_PORT", "3050")
    monkeypatch.setenv("ATLILITH_TOOLSETS", "tenancy, messaging")
    monkeypatch.setenv("ATLILITH_MCP_ALLOWED_HOSTS", "api.example.com,127.0.0.1:*")
    s = Settings()
    assert s.database_url == "postgresql://u@h:5/d" and s.port == 3050
    assert s.toolsets == ["tenancy", "messaging"]
    assert s.mcp_allowed_hosts == ["api.example.com", "127.0.0.1:*"]
    with pytest.raises(RuntimeError, match="JWT_SECRET"):
        Settings(env="production").resolved_jwt_secret()


def test_every_documented_setting_exists() -> None:
    """The README's configuration table and Settings stay in step."""
    readme = (ROOT / "README.md").read_text()
    documented = set(re.findall(r"^\| `([A-Z_]+)`", readme, flags=re.MULTILINE))
    expected = set()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        expected.add(str(choices[0]) if choices else f"ATLILITH_{name.upper()}")
    # The client commands read their own environment (they need no server settings).
    expected |= {client_cli.SERVER_ENV, client_cli.CONFIG_ENV, client_cli.TOKEN_ENV}
    assert expected - documented == set(), "settings missing from the README table"
    assert documented - expected == set(), "README documents settings that do not exist"
