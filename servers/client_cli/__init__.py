"""Client commands of `atlilith`: login, logout, whoami, add, search, jobs, credits.

They talk HTTP to a running Atlilith server (never to the database), so they work the same
against `./run dev` on 127.0.0.1 and against a deployment. Registered on the main CLI by
`servers.cli`. The credential store is a JSON file in the user's config dir (0600 in a 0700
dir, replaced atomically); see docs/cli.md.
"""

from __future__ import annotations

import typer

from servers.client_cli.config import CONFIG_ENV, SERVER_ENV, TOKEN_ENV
from servers.client_cli.credits import credits
from servers.client_cli.errors import (
    EXIT_AUTH,
    EXIT_FAILED,
    EXIT_FORBIDDEN,
    EXIT_NETWORK,
    EXIT_NOT_FOUND,
    EXIT_PROBLEM,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    CliError,
)
from servers.client_cli.jobs import jobs_app
from servers.client_cli.session import login, logout, whoami
from servers.client_cli.skills import add, search

__all__ = [
    "CONFIG_ENV",
    "EXIT_AUTH",
    "EXIT_FAILED",
    "EXIT_FORBIDDEN",
    "EXIT_NETWORK",
    "EXIT_NOT_FOUND",
    "EXIT_PROBLEM",
    "EXIT_TIMEOUT",
    "EXIT_USAGE",
    "SERVER_ENV",
    "TOKEN_ENV",
    "CliError",
    "register",
]


def register(app: typer.Typer) -> None:
    # Each command is named after its function, in this order in `atlilith --help`.
    for command in (login, logout, whoami, add, search):
        app.command()(command)
    app.add_typer(jobs_app, name="jobs")
    app.command()(credits)
