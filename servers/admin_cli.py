"""`atlilith admin promote|demote <handle>`: the local operator makes (or unmakes) platform
admins. It needs database access — nothing reachable over HTTP can make an admin — and every
change is audited with the actor `operator`."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from core.errors import DomainError

admin_cli = typer.Typer(
    name="admin",
    help="Platform admin (operator, needs database access): promote or demote a platform admin.",
    no_args_is_help=True,
    add_completion=False,
)

Handle = Annotated[str, typer.Argument(help="The person's handle (or id).")]


def register(app: typer.Typer) -> None:
    app.add_typer(admin_cli, name="admin")


def _set(handle: str, admin: bool) -> None:
    from core.admin import set_platform_admin
    from core.uow import Database
    from servers.ops_cli import _db_settings

    settings = _db_settings()

    async def run() -> tuple[str, bool]:
        db = Database(settings)
        try:
            out = await set_platform_admin(db, handle, admin)
            return out.person.slug, out.changed
        finally:
            await db.dispose()

    try:
        slug, changed = asyncio.run(run())
    except DomainError as err:
        from servers.cli_database import domain_line

        typer.secho(domain_line(err), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from err
    state = "a platform admin" if admin else "not a platform admin"
    typer.echo(f"{slug} is {'now' if changed else 'already'} {state}.")


@admin_cli.command()
def promote(handle: Handle) -> None:
    """Make a person a platform admin (audited as `operator`)."""
    _set(handle, True)


@admin_cli.command()
def demote(handle: Handle) -> None:
    """Take platform admin away from a person (audited as `operator`)."""
    _set(handle, False)
