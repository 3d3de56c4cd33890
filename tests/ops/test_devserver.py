"""`./run dev:start|status|logs|stop` on the embedded PostgreSQL: the server runs in the
background, reports healthy, and stopping it — even after it was killed -9 — leaves no
PostgreSQL behind."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import uuid
from pathlib import Path

from core.devserver import postmaster, read_state
from tests.support.processes import dev_env, run_cli
from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parents[2]


def atlilith(data_dir: Path, port: int, *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    env = dev_env(data_dir, ATLILITH_PORT=str(port), ATLILITH_BACKUP_DIR=str(data_dir / "backups"))
    return run_cli(env, *args, timeout=timeout)


async def test_dev_server_lifecycle_leaves_nothing_running() -> None:
    data_dir = ROOT / ".atlilith" / f"ops-dev-{uuid.uuid4().hex[:6]}"
    port = free_port()
    pgdata = data_dir / "pg"
    try:
        started = await asyncio.to_thread(atlilith, data_dir, port, "dev", "--detach")
        assert started.returncode == 0, started.stdout + started.stderr
        state = read_state(data_dir)
        assert state is not None and state.alive and state.url == f"http://127.0.0.1:{port}"
        assert postmaster(pgdata) is not None

        status = await asyncio.to_thread(atlilith, data_dir, port, "status")
        assert status.returncode == 0 and "/health 200" in status.stdout, status.stdout
        again = await asyncio.to_thread(atlilith, data_dir, port, "dev", "--detach")
        assert again.returncode != 0 and "already runs" in again.stderr
        logs = await asyncio.to_thread(atlilith, data_dir, port, "logs", "-n", "50")
        assert logs.returncode == 0 and "Uvicorn running" in logs.stdout

        # A server killed hard leaves its PostgreSQL orphaned: dev:stop still cleans up.
        os.kill(state.pid, signal.SIGKILL)
        stopped = await asyncio.to_thread(atlilith, data_dir, port, "stop")
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert "outlived the server" in stopped.stdout and "nothing left running" in stopped.stdout
        assert postmaster(pgdata) is None and read_state(data_dir) is None
        down = await asyncio.to_thread(atlilith, data_dir, port, "status")
        assert down.returncode == 1 and "not running" in down.stdout

        # A clean start and stop: the server stops its own PostgreSQL.
        assert (await asyncio.to_thread(atlilith, data_dir, port, "dev", "--detach")).returncode == 0
        stopped = await asyncio.to_thread(atlilith, data_dir, port, "stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout and "outlived" not in stopped.stdout
        assert postmaster(pgdata) is None
    finally:
        if postmaster(pgdata) is not None:
            from core.devserver import stop_postgres

            stop_postgres(pgdata)
        shutil.rmtree(data_dir, ignore_errors=True)
