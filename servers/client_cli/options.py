"""Options and argument parsing shared by the commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from servers.client_cli.config import SERVER_ENV
from servers.client_cli.errors import EXIT_USAGE, CliError

OrgOpt = Annotated[
    str | None,
    typer.Option("--org", help="Act in this org (slug), or `personal`. Default: the saved context."),
]
ServerOpt = Annotated[
    str | None,
    typer.Option("--server", envvar=SERVER_ENV, help="Server URL. Default: the config's default."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine output: one JSON document on stdout.")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=100, help="Page size.")]
CursorOpt = Annotated[str | None, typer.Option("--cursor", help="`next_cursor` of the previous page.")]


def parse_object(text: str, what: str) -> dict[str, Any]:
    """A JSON object from the argument, `@file`, or `-` (stdin)."""
    source = text
    if text == "-":
        source = sys.stdin.read()
    elif text.startswith("@"):
        try:
            source = Path(text[1:]).read_text(encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot read {what} from {text[1:]}: {exc.strerror}", EXIT_USAGE) from exc
    try:
        value = json.loads(source)
    except json.JSONDecodeError as exc:
        raise CliError(
            f"{what} is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
            EXIT_USAGE,
            hint=f"""pass an object, e.g. {what} '{{"email": "a@example.com"}}', @file.json or -""",
        ) from exc
    if not isinstance(value, dict):
        raise CliError(f"{what} must be a JSON object, not {type(value).__name__}", EXIT_USAGE)
    return value
