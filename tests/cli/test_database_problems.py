"""The commands that use the database say in one line, never with a traceback, when it cannot be
used: a malformed DATABASE_URL, a server nobody listens on, a database never migrated; and
`seed` refuses a seed password sign-up would refuse, or says it left an existing one alone."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import create_async_engine

from core.config import Settings
from core.db import asyncpg_url
from core.errors import ValidationFailed
from core.migrate import create_database, drop_database
from core.seed import seed
from core.uow import Database
from servers.cli_database import database_problem
from tests.conftest import SEED_PASSWORD
from tests.support.processes import run_cli, worker_env
from tests.support.serving import free_port

FULL_ADVICE = "run ./run migrate first, or set DATABASE_URL or ATLILITH_DATA_DIR to the server's data dir"


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and "─" not in result.stderr, result.stderr
    # Structured log lines (JSON) aside, the command says one thing.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def atlilith(settings: Settings, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return run_cli({**worker_env(settings), **env}, *args)


@pytest.mark.parametrize("command", [["migrate"], ["seed", "--no-demo"], ["admin", "promote", "someone"]])
async def test_a_malformed_database_url_is_one_line(settings: Settings, command: list[str]) -> None:
    result = await asyncio.to_thread(atlilith, settings, *command, DATABASE_URL="notaurl:secret")
    line = one_line(result)
    assert line == (
        "DATABASE_URL is not a database URL: write it as postgresql://USER:PASSWORD@HOST:5432/DATABASE"
    )
    other = one_line(await asyncio.to_thread(atlilith, settings, *command, DATABASE_URL="mysql://u@h/d"))
    assert "unsupported database URL scheme 'mysql': PostgreSQL only" in other, other


@pytest.mark.parametrize("command", [["migrate"], ["seed", "--no-demo"], ["token", "--person", "someone"]])
async def test_a_server_nobody_listens_on_is_one_line(settings: Settings, command: list[str]) -> None:
    nowhere = f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"
    line = one_line(await asyncio.to_thread(atlilith, settings, *command, DATABASE_URL=nowhere))
    assert line.startswith("cannot connect to the database (") and "Connect call failed" in line, line
    assert line.endswith("check DATABASE_URL and that PostgreSQL is running there"), line


async def test_seed_and_token_on_a_database_never_migrated_say_migrate_first(settings: Settings) -> None:
    assert settings.database_url is not None
    name = f"atlilith_bare_{secrets.token_hex(4)}"
    await create_database(settings.database_url, name)
    bare = make_url(settings.database_url).set(database=name).render_as_string(hide_password=False)
    try:
        seeded = one_line(await asyncio.to_thread(atlilith, settings, "seed", "--no-demo", DATABASE_URL=bare))
        assert seeded.startswith("cannot use the database (") and "does not exist" in seeded, seeded
        assert seeded.endswith(FULL_ADVICE), seeded
        token = await asyncio.to_thread(
            atlilith, settings, "token", "--person", "transquinnftw", DATABASE_URL=bare
        )
        line = one_line(token)
        # The whole sentence, up to the data dir it names.
        assert line.startswith("cannot use the database (") and line.endswith(FULL_ADVICE), line
    finally:
        await drop_database(settings.database_url, name)


async def test_seed_refuses_a_short_password_and_keeps_an_existing_one(settings: Settings) -> None:
    short = one_line(
        await asyncio.to_thread(atlilith, settings, "seed", "--no-demo", ATLILITH_SEED_PASSWORD="short")
    )
    assert short == (
        "the seed password (ATLILITH_SEED_PASSWORD) must have at least 10 characters:"
        " choose 10 to 256 characters, or unset ATLILITH_SEED_PASSWORD to have one generated"
    )
    # The password every test seeds with (the person may exist already, or be created now).
    first = await asyncio.to_thread(
        atlilith, settings, "seed", "--no-demo", ATLILITH_SEED_PASSWORD=SEED_PASSWORD
    )
    assert first.returncode == 0, first.stderr
    again = await asyncio.to_thread(
        atlilith, settings, "seed", "--no-demo", ATLILITH_SEED_PASSWORD=SEED_PASSWORD
    )
    assert again.returncode == 0, again.stderr
    said = [line.strip() for line in again.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert said == [
        "ATLILITH_SEED_PASSWORD left unchanged: transquinnftw already exists and keeps its password."
    ], again.stderr


async def test_core_seed_refuses_a_password_sign_up_would_refuse(db: Database) -> None:
    with pytest.raises(ValidationFailed) as refused:
        await seed(db, "x" * 9)
    assert (
        refused.value.message == "the seed password (ATLILITH_SEED_PASSWORD) must have at least 10 characters"
    )
    assert refused.value.hint and "10 to 256 characters" in refused.value.hint
    again = await seed(db, SEED_PASSWORD)
    assert again.password_unchanged or again.person_created


async def test_an_os_error_of_the_command_itself_keeps_its_own_words(
    settings: Settings, tmp_path: Path
) -> None:
    # Said "cannot connect to the database ... check DATABASE_URL" when any OSError was raised.
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = await asyncio.to_thread(atlilith, settings, "backup", "--out", str(blocker / "backups"))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NotADirectoryError" in result.stderr, result.stderr
    assert "cannot connect to the database" not in result.stderr, result.stderr


async def test_a_missing_table_means_migrate_first_only_where_the_schema_is_read(db: Database) -> None:
    assert db.settings.database_url is not None
    engine = create_async_engine(asyncpg_url(db.settings.database_url))
    try:
        async with engine.connect() as conn:
            with pytest.raises(DBAPIError) as missing:
                await conn.execute(text("SELECT 1 FROM platform.no_such_table"))
    finally:
        await engine.dispose()
    # In a command that migrates first (dev, migrate, restore) the same error is a bug: traceback.
    assert database_problem(missing.value) is None
    line = database_problem(missing.value, reads_schema=True)
    assert line is not None and line.startswith('cannot use the database (relation "platform.no_such_table"')
    assert line.endswith(FULL_ADVICE), line
    # An OSError that is not the driver's: writing the output, or raised while handling a
    # database error, is its own failure.
    assert database_problem(BrokenPipeError(32, "Broken pipe"), reads_schema=True) is None
    during = PermissionError(13, "Permission denied", "/backups")
    during.__context__ = missing.value  # as Python sets it for an error raised in `except`
    assert database_problem(during, reads_schema=True) is None
