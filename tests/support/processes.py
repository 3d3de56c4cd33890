"""`atlilith` as its own process, the way an operator runs it: an environment that carries none
of this machine's Atlilith settings, and the CLI run to completion."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from core.config import Settings

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "servers.cli"]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any ATLILITH_ setting or DATABASE_URL (a developer's
    own must not leak into the process under test), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ATLILITH_") and k != "DATABASE_URL"}
    env.update({"PYTHONPATH": str(ROOT), **extra})
    return env


def worker_env(settings: Settings, **extra: str) -> dict[str, str]:
    """A clean environment for an `atlilith` process that joins a test's database: its URL,
    secret and data dir from `settings`, quiet logs, plus `extra`."""
    return clean_env(
        DATABASE_URL=settings.database_url or "",
        ATLILITH_JWT_SECRET=settings.jwt_secret or "",
        ATLILITH_DATA_DIR=str(settings.data_dir),
        ATLILITH_LOG_LEVEL="warning",
        **extra,
    )


def dev_env(data_dir: Path, **extra: str) -> dict[str, str]:
    """A clean environment for a dev installation in `data_dir`: a known seed password and the
    cheapest password hashing, so that tests start it quickly and can sign in."""
    return clean_env(
        ATLILITH_DATA_DIR=str(data_dir),
        ATLILITH_SEED_PASSWORD="dev-test-password",
        ATLILITH_PASSWORD_HASH_PROFILE="cheapest",
        **extra,
    )


def run_cli(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
