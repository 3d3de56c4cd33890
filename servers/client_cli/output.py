"""What a command prints: rich tables for people, one JSON document with --json."""

from __future__ import annotations

import datetime as dt
import functools
import json
import sys
from collections.abc import Callable, Iterable
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from servers.client_cli.errors import CliError

P = ParamSpec("P")
R = TypeVar("R")


class Output:
    """Human mode: rich tables and messages on stdout. JSON mode: exactly one JSON document on
    stdout; anything for humans goes to stderr."""

    def __init__(self, json_mode: bool) -> None:
        self.json = json_mode
        # Built per command (not at import) so they write to the streams of this invocation.
        self.out = Console(file=sys.stdout, highlight=False)
        # Messages are not hard-wrapped: a URL or a hint stays on one line for grep and for tests.
        self.err = Console(file=sys.stderr, highlight=False, soft_wrap=True)

    def say(self, message: str) -> None:
        (self.err if self.json else self.out).print(message, soft_wrap=True)

    def document(self, doc: Any) -> None:
        sys.stdout.write(json.dumps(doc, indent=2, default=str, ensure_ascii=False) + "\n")
        sys.stdout.flush()

    def table(self, table: Table) -> None:
        self.out.print(table)

    def error(self, err: CliError) -> None:
        if self.json:
            self.document({"error": err.as_dict()})
        self.err.print(f"[bold red]error:[/] {escape_markup(err.message)}")
        for line in err.details:
            self.err.print(f"  - {escape_markup(line)}")
        if err.hint:
            self.err.print(f"[yellow]hint:[/] {escape_markup(err.hint)}")


def escape_markup(text: str) -> str:
    from rich.markup import escape

    return escape(text)


def handled(fn: Callable[P, R]) -> Callable[P, R]:
    """Turn a CliError into its message and exit code (and an error document with --json)."""

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return fn(*args, **kwargs)
        except CliError as err:
            Output(bool(kwargs.get("json_output"))).error(err)
            raise typer.Exit(err.exit_code) from None

    return wrapper


def context_label(me: dict[str, Any]) -> str:
    ctx = me.get("context") or {}
    if ctx.get("kind") == "org" and ctx.get("org"):
        return f"org {ctx['org']['slug']} ({ctx.get('role') or 'member'})"
    return "personal"


def when(value: Any) -> str:
    if not value:
        return ""
    try:
        return dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def page_hint(out: Output, page: dict[str, Any]) -> None:
    if page.get("next_cursor"):
        out.say(f"[dim]more: --cursor {page['next_cursor']}[/]")


def show_page(
    out: Output,
    page: dict[str, Any],
    table: Table,
    row: Callable[[dict[str, Any]], Iterable[str]],
    *,
    empty: str,
) -> None:
    """A page of a list: the page itself with --json; else `empty` when it has no items, or
    `table` with a row per item and the cursor of the next page."""
    if out.json:
        out.document(page)
        return
    items = page.get("items") or []
    if not items:
        out.say(empty)
        return
    for item in items:
        table.add_row(*row(item))
    out.table(table)
    page_hint(out, page)
