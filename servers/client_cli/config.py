"""The credential store: one JSON file in the user's config dir (0600 in a 0700 dir, replaced
atomically), keyed by server URL."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import tempfile
from pathlib import Path
from typing import Literal

import httpx
import typer
from pydantic import BaseModel, Field, ValidationError

from servers.client_cli.errors import EXIT_FAILED, EXIT_USAGE, CliError

DEFAULT_SERVER = "http://127.0.0.1:3040"


CONFIG_ENV = "ATLILITH_CONFIG_DIR"
SERVER_ENV = "ATLILITH_SERVER"
TOKEN_ENV = "ATLILITH_TOKEN"  # noqa: S105  (the variable's name, not a secret)


class Credential(BaseModel):
    kind: Literal["api_key", "session"]
    token: str
    refresh_token: str | None = None
    person: str | None = None
    org: str | None = Field(default=None, description="The context commands use when --org is omitted.")
    saved_at: dt.datetime


class ConfigFile(BaseModel):
    default_server: str | None = None
    servers: dict[str, Credential] = Field(default_factory=dict)


def config_dir() -> Path:
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else Path(typer.get_app_dir("atlilith"))


def config_path() -> Path:
    return config_dir() / "config.json"


def load_config() -> ConfigFile:
    path = config_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_FAILED) from exc
    try:
        return ConfigFile.model_validate_json(raw)
    except ValidationError as exc:
        raise CliError(
            f"the config file {path} is not valid",
            EXIT_FAILED,
            hint="fix or delete it, then `atlilith login` again",
        ) from exc


def save_config(config: ConfigFile) -> Path:
    """Write the file 0600 inside a 0700 dir, atomically: a crash never leaves half a file, and
    the secret is never readable by others, not even for a moment."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / "config.json"
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=directory)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(config.model_dump_json(indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return path


def normalize_server(url: str) -> str:
    text = url.strip().rstrip("/")
    if "://" not in text:
        raise CliError(
            f"{url!r} is not a server URL",
            EXIT_USAGE,
            hint=f"give the scheme, e.g. --server {DEFAULT_SERVER}",
        )
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise CliError(f"{url!r} is not a server URL", EXIT_USAGE) from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise CliError(f"{url!r} is not an http(s) URL", EXIT_USAGE, hint=f"e.g. --server {DEFAULT_SERVER}")
    return text
