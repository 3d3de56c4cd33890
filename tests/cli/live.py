"""A real Atlilith server on 127.0.0.1 for the client CLI tests, and a way to run the CLI.

The server is its own process (uvicorn, the app of servers.app, the test database, its relay
running so jobs really execute); the CLI runs in-process with typer's CliRunner, so the
synchronous CLI can call the server while the test's event loop waits."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from typer.testing import CliRunner, Result

from core.config import Settings
from servers.cli import cli
from tests.conftest import ROOT
from tests.support.serving import free_port


class LiveServer:
    """`tests.cli.serve_live` in a subprocess on a free port of 127.0.0.1, on the test database."""

    def __init__(self, settings: Settings, log_file: Path) -> None:
        self.port = free_port()
        self.settings = settings.model_copy(update={"port": self.port, "relay_poll_seconds": 0.1})
        self.log_file = log_file
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "PYTHONPATH": str(ROOT),
            "ATLILITH_TEST_SETTINGS": self.settings.model_dump_json(),
        }
        with self.log_file.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tests.cli.serve_live"], cwd=ROOT, env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("the live server did not start:\n" + self.log_file.read_text()[-3000:])
            time.sleep(0.1)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)


class Cli:
    """`atlilith ...` in-process, with its own config dir and none of the caller's env."""

    def __init__(self, config_dir: Path, server: str) -> None:
        self.config_dir = config_dir
        self.server = server
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None, **env: str | None) -> Result:
        base: dict[str, str | None] = {
            "ATLILITH_CONFIG_DIR": str(self.config_dir),
            "ATLILITH_SERVER": None,
            "ATLILITH_TOKEN": None,
            "COLUMNS": "200",
        }
        return self.runner.invoke(cli, list(args), input=input, env={**base, **env}, catch_exceptions=False)

    def login(self, handle: str, password: str, *extra: str) -> Result:
        result = self(
            "login",
            "--server",
            self.server,
            "--login",
            handle,
            "--password-stdin",
            *extra,
            input=password + "\n",
        )
        assert result.exit_code == 0, result.output
        return result

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.json"


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output


def one_json(result: Result) -> Any:
    import json

    return json.loads(result.stdout)
