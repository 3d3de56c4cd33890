"""`./run token` finds the database of the dev server running from another data dir, and when
there is none (or the database is not Atlilith's) says so in one line, never with a traceback
and never by starting an empty PostgreSQL of its own."""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx

from core.devserver import postmaster, stop_postgres
from core.embedded import DATABASE, ensure_database
from core.embedded import start as start_embedded
from tests.support.processes import dev_env, run_cli
from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parents[2]


def atlilith(data_dir: Path, runtime: Path, *args: str, port: int = 0) -> subprocess.CompletedProcess[str]:
    env = dev_env(data_dir, ATLILITH_RUNTIME_DIR=str(runtime), ATLILITH_PORT=str(port or free_port()))
    return run_cli(env, *args)


def one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    # Structured log lines (JSON) aside, the command says one thing.
    lines = [line for line in result.stderr.splitlines() if line.strip() and not line.startswith("{")]
    assert len(lines) == 1, result.stderr
    return lines[0]


async def test_token_uses_the_dev_server_running_from_another_data_dir() -> None:
    tag = uuid.uuid4().hex[:6]
    server_dir = ROOT / ".atlilith" / f"ops-token-{tag}"
    elsewhere = ROOT / ".atlilith" / f"ops-token-{tag}-elsewhere"
    runtime = ROOT / ".atlilith" / f"ops-token-{tag}-run"
    port = free_port()
    try:
        started = await asyncio.to_thread(atlilith, server_dir, runtime, "dev", "--detach", port=port)
        assert started.returncode == 0, started.stdout + started.stderr

        made = await asyncio.to_thread(atlilith, elsewhere, runtime, "token", "--person", "transquinnftw")
        assert made.returncode == 0, made.stdout + made.stderr
        assert (
            "Traceback" not in made.stderr
            and f"using the dev server running from {server_dir}" in made.stderr
        )
        # No second PostgreSQL was started for the empty data dir.
        assert not (elsewhere / "pg").exists()
        token = made.stdout.strip()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            me = await http.get("/v1/me", headers={"authorization": f"Bearer {token}"})
        assert me.status_code == 200 and me.json()["person"]["slug"] == "transquinnftw", me.text

        stopped = await asyncio.to_thread(atlilith, server_dir, runtime, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        # With no server running: one line saying what to do.
        alone = await asyncio.to_thread(atlilith, elsewhere, runtime, "token", "--person", "transquinnftw")
        line = one_line_refusal(alone)
        assert "no dev server running" in line and "DATABASE_URL" in line and "ATLILITH_DATA_DIR" in line
        assert not (elsewhere / "pg").exists()
    finally:
        if postmaster(server_dir / "pg") is not None:
            stop_postgres(server_dir / "pg")
        for folder in (server_dir, elsewhere, runtime):
            shutil.rmtree(folder, ignore_errors=True)


async def test_token_on_a_database_that_is_not_atliliths_is_one_line() -> None:
    """What the issue saw: an embedded PostgreSQL never migrated (no app role)."""
    data_dir = ROOT / ".atlilith" / f"ops-token-{uuid.uuid4().hex[:6]}-bare"
    runtime = data_dir.with_name(data_dir.name + "-run")
    server = start_embedded(data_dir)
    try:
        await ensure_database(server.url(DATABASE), DATABASE)
        result = await asyncio.to_thread(atlilith, data_dir, runtime, "token", "--person", "transquinnftw")
        line = one_line_refusal(result)
        assert line.startswith("cannot use the database (") and "ATLILITH_DATA_DIR" in line, line
        # Whichever of the app's roles it reaches first (the token is minted by system work).
        assert re.search(r'role "atlilith_(app|system)" does not exist', line), line
    finally:
        server.stop()
        if postmaster(data_dir / "pg") is not None:
            stop_postgres(data_dir / "pg")
        shutil.rmtree(data_dir, ignore_errors=True)
        shutil.rmtree(runtime, ignore_errors=True)
