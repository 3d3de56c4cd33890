"""`atlilith skills ...`: validate the skills and export them as a Claude Code plugin marketplace.

Registered on the main CLI by `servers.cli`; the work lives in `servers.skills`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from core import __version__
from servers import skills as skill_files

skills_cli = typer.Typer(name="skills", help="Agent skills: validate, export.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(skills_cli, name="skills")


@skills_cli.command("export")
def export(
    directory: Annotated[Path, typer.Argument(help="Where to write the marketplace.")],
) -> None:
    """Write a Claude Code plugin marketplace (DIR/.claude-plugin/marketplace.json, one plugin
    per skill); add it with `/plugin marketplace add DIR`."""
    try:
        names = skill_files.export_marketplace(directory, __version__)
    except ValueError as exc:
        typer.secho(str(exc), fg=typer.colors.RED, err=True)
        raise typer.Exit(2) from exc
    typer.echo(f"Wrote {len(names)} plugins to {directory}: {', '.join(names)}")


@skills_cli.command("check")
def check() -> None:
    """Validate every skills/<name>/SKILL.md per the Agent Skills spec."""
    failed = False
    for name, skill in skill_files.skills().items():
        for problem in skill_files.problems(skill):
            failed = True
            typer.secho(f"{name}: {problem}", fg=typer.colors.RED, err=True)
    if failed:
        raise typer.Exit(1)
    typer.echo("All skills are valid.")
