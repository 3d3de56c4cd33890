"""Operator commands of `atlilith`: generate, backup, restore, deploy, status, stop, logs.

Registered on the main CLI by `servers.cli`; the work itself lives in core (`core.backup`,
`core.deployments`, `core.ports`, `core.devserver`), so tests drive it without a terminal.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from core.analytics.presenters import duration
from core.config import Settings, get_settings
from core.observability import configure_logging

if TYPE_CHECKING:
    from core.deployments import Deployment, Step


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _say(message: str, color: str | None = None) -> None:
    typer.secho(message, fg=color)


def register(app: typer.Typer) -> None:
    # Each command is named after its function.
    for command in (generate, backup, restore, deploy, status, stop, logs):
        app.command()(command)


# --- generated infrastructure files -----------------------------------------------------------------


def generated_files() -> dict[Path, str]:
    from core import deployments, ports

    return {
        ports.ENV_FILE: ports.render_env(),
        deployments.DEPLOYMENTS_ENV: deployments.render_stack_env(),
        deployments.CADDYFILE: deployments.render_caddyfile(),
    }


def generate(
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 if a file is stale.")
    ] = False,
) -> None:
    """Write infrastructure/ports.env, deployments.env and the Caddyfile from ports.yaml and deployments/."""
    from core.deployments import DeploymentError
    from core.ports import ROOT, RegistryError

    try:
        files = generated_files()
    except (DeploymentError, RegistryError) as exc:
        _fail(str(exc))
    stale = []
    for path, content in files.items():
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == content:
            continue
        stale.append(path)
        if not check:
            path.write_text(content, encoding="utf-8")
    for path in files:
        mark = ("stale" if check else "written") if path in stale else "up to date"
        _say(f"{path.relative_to(ROOT)}: {mark}")
    if check and stale:
        _fail("generated files are stale: run ./run generate and commit them", 1)


# --- backup and restore ---------------------------------------------------------------------------


_resolved: list[Settings] = []


def _db_settings() -> Settings:
    """Settings with a database URL, the embedded server started once per process (a second
    start in the same process would lose track of it and leave it running at exit)."""
    from servers.cli import _database

    if not _resolved:
        settings = get_settings()
        configure_logging(settings)
        _resolved.append(_database(settings)[0])
    return _resolved[0]


def _age(created_at: str) -> str:
    seconds = (dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(created_at)).total_seconds()
    return f"{duration(seconds)} ago"


def backup(
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for backups (ATLILITH_BACKUP_DIR).")
    ] = None,
    keep: Annotated[
        int | None, typer.Option("--keep", min=1, help="Then delete all but the newest N backups there.")
    ] = None,
    list_only: Annotated[bool, typer.Option("--list", help="List the backups in the folder.")] = False,
) -> None:
    """pg_dump every component schema (compressed) with a manifest: rows and md5 per table."""
    from core import backup as ops

    if list_only:
        folder = (out or get_settings().backup_dir).resolve()
        # The default folder lists what its index recorded too (backups written with --out).
        found = ops.list_backups(folder) if out else ops.known_backups(folder)
        if not found:
            _say(f"no backups in {folder}")
        for path in found:
            m = ops.Manifest.read(path / ops.MANIFEST_FILE)
            size = m.dump.get("bytes", 0) / 1_048_576
            _say(
                f"{path}  {_age(m.created_at):>14}  {m.total_rows:>8} rows  {size:8.2f} MiB"
                f"  revisions {','.join(m.alembic_revisions)}"
            )
        return
    settings = _db_settings()
    try:
        result = asyncio.run(ops.backup(settings, out, keep=keep))
    except ops.BackupError as exc:
        _fail(f"backup failed: {exc}", 1)
    m = result.manifest
    _say(f"backup: {result.path}", "green")
    _say(
        f"  {len(m.tables)} tables, {m.total_rows} rows, {m.dump['bytes'] / 1_048_576:.2f} MiB"
        f" in {m.duration_seconds:.1f} s; schemas {', '.join(m.schemas)};"
        f" revisions {', '.join(m.alembic_revisions) or 'none'};"
        f" {Path(m.pg_dump['path']).name} {m.pg_dump['version']}"
    )
    for path in result.pruned:
        _say(f"  pruned {path}")


def _latest(settings: Settings, folder: Path | None) -> Path:
    """The newest backup in `folder` (--from), else in ATLILITH_BACKUP_DIR or recorded in its
    index (backups written with `backup --out`)."""
    from core import backup as ops

    if folder is not None:
        found = ops.list_backups(folder.resolve())
        if not found:
            _fail(f"no backups in {folder.resolve()}")
        return found[-1]
    found = ops.known_backups(settings.backup_dir.resolve())
    if not found:
        _fail(
            f"no backups in {settings.backup_dir.resolve()} nor recorded in its {ops.INDEX_FILE}:"
            " give the backup's folder, or `latest --from DIR`"
        )
    return found[-1]


def restore(
    source: Annotated[
        str,
        typer.Argument(
            help="A backup folder, or `latest`: the newest in ATLILITH_BACKUP_DIR or written with"
            " `backup --out` (or in --from)."
        ),
    ],
    from_dir: Annotated[
        Path | None, typer.Option("--from", help="With `latest`: the newest backup in this folder.")
    ] = None,
    into: Annotated[
        str | None,
        typer.Option("--into", help="Restore into this database on the same server (created if missing)."),
    ] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Check everything, change nothing.")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Replace the backup's schemas in a non-empty database.")
    ] = False,
) -> None:
    """Restore a backup: verify the dump, refuse a non-empty target without --force, load it in
    one transaction, compare rows and checksums with the manifest, migrate."""
    from core import backup as ops

    settings = _db_settings()
    if from_dir is not None and source != "latest":
        _fail("--from goes with `latest`; give either a backup folder or `latest --from DIR`")
    path = _latest(settings, from_dir) if source == "latest" else Path(source)
    try:
        result = asyncio.run(ops.restore(settings, path, database=into, force=force, dry_run=dry_run))
    except ops.RestoreRefused as exc:
        _fail(f"restore refused: {exc}", 3)
    except ops.BackupError as exc:
        _fail(f"restore failed: {exc}", 1)
    plan, m = result.plan, result.plan.manifest
    _say(
        f"backup {plan.source} ({m.created_at}, {m.total_rows} rows,"
        f" revisions {', '.join(m.alembic_revisions)})"
    )
    _say(
        f"target database {plan.target_database!r}"
        + (" (to be created)" if plan.create_database else "")
        + ("" if plan.empty else f", replacing schemas {', '.join(plan.existing_schemas)}")
    )
    _say(
        f"archive: {plan.archive_entries} entries, sha256 ok;"
        f" {plan.pg_restore.path} ({plan.pg_restore.version})"
    )
    if not result.restored:
        _say("dry run: nothing was changed", "yellow")
        return
    if result.mismatches:
        for line in result.mismatches:
            _say(f"  MISMATCH {line}", "red")
        _fail("restored data differs from the manifest: do not point the app at it; investigate", 1)
    _say(
        f"restored and verified: {len(m.tables)} tables, rows and checksums equal; migrated"
        f" ({result.duration_seconds:.1f} s)",
        "green",
    )


# --- deployments ----------------------------------------------------------------------------------


def deploy(
    domain: Annotated[
        str | None, typer.Argument(help="A folder of deployments/ (e.g. cocotte.maison).")
    ] = None,
    apply: Annotated[
        bool, typer.Option("--apply", help="Run the steps that can run here (the rest are printed).")
    ] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Only check the database has what the deployment names.")
    ] = False,
) -> None:
    """Render a deployment and print its steps (a dry run unless --apply)."""
    from core import deployments
    from core.features import feature_names

    if domain is None:
        for name in deployments.domains():
            dep = deployments.load(name)
            _say(f"{name:32} template {dep.template.name:11} features {', '.join(dep.features)}")
        return
    try:
        dep = deployments.load(domain)
    except deployments.DeploymentError as exc:
        _fail(str(exc))
    if check:
        _check_refs(dep)
        return
    missing = dep.missing_features(feature_names())
    _say(f"deployment {dep.domain}: template {dep.template.name} — {dep.template.description}")
    refs = {"person": dep.person, "org": dep.org, "brand": dep.brand}
    _say("  " + ", ".join(f"{k} {v}" for k, v in refs.items() if v) if any(refs.values()) else "  no tenant")
    _say(f"  hosts {', '.join(dep.hosts)}; features {', '.join(dep.features)}")
    if missing:
        _say(f"  this build does not ship: {', '.join(missing)}", "yellow")
    _say("\nCaddy site (in infrastructure/Caddyfile):\n" + deployments.caddy_site(dep) + "\n")
    steps = deployments.plan(dep)
    for i, step in enumerate(steps, 1):
        where = "local" if step.action else "host "
        _say(f"{i:2}. [{where}] {step.title}\n      $ {step.command}")
    if not apply:
        _say("\ndry run: nothing was changed (--apply runs the [local] steps here)", "yellow")
        return
    _apply(dep, steps, missing)


def _apply(dep: Deployment, steps: list[Step], missing: list[str]) -> None:
    _say("")
    for step in steps:
        if step.action is None:
            _say(f"skip  {step.title} (needs the production host)")
            continue
        _say(f"run   {step.title}")
        if step.action == "generate":
            generate(check=True)
        elif step.action == "features":
            if missing:
                _fail(f"this build does not ship {', '.join(missing)}: deploy a build that does", 1)
        elif step.action == "backup":
            from core import backup as ops

            settings = _db_settings()
            try:
                result = asyncio.run(ops.backup(settings))
                _say(f"      {result.path}")
            except ops.BackupError as exc:
                if "no schema is owned" not in str(exc):
                    _fail(f"backup failed, nothing else was done: {exc}", 1)
                _say("      nothing to back up yet (a fresh database)")
        elif step.action == "migrate":
            from core.migrate import migrate

            asyncio.run(migrate(_db_settings()))
        elif step.action == "seed":
            from servers.cli import _seed

            _seed(_db_settings())
        elif step.action == "check":
            _check_refs(dep)
    _say(f"applied the local steps of {dep.domain}", "green")


def _check_refs(dep: Deployment) -> None:
    from core.deployments import check_in_database
    from core.uow import Database

    settings = _db_settings()

    async def run() -> list[str]:
        db = Database(settings)
        try:
            return await check_in_database(db, dep)
        finally:
            await db.dispose()

    problems = asyncio.run(run())
    for problem in problems:
        _say(f"  missing: {problem}", "red")
    if problems:
        _fail(f"{dep.domain} references data this database lacks", 1)
    _say(f"  {dep.domain}: everything it references exists")


# --- the dev server as a background process ---------------------------------------------------------


def refuse_if_running(settings: Settings) -> None:
    from core.devserver import running

    state = running(settings.data_dir)
    if state is not None:
        _fail(
            f"a dev server already runs from {settings.data_dir} (pid {state.pid}, {state.url}):"
            " ./run dev:stop"
        )


def _health(url: str, timeout: float = 2.0) -> tuple[int | None, str]:
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=timeout) as response:  # noqa: S310 - our own URL
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode(errors="replace")
    except OSError as exc:
        return None, str(exc)


def detach_dev(settings: Settings) -> None:
    """Start `atlilith dev` in its own session, logging to <data dir>/dev.log; wait for /health."""
    from core.devserver import log_path, running

    refuse_if_running(settings)
    log = log_path(settings.data_dir)
    log.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", "servers.cli", "dev", "--port", str(settings.port), "--host", settings.host]
    args += ["--log-file", str(log)]
    with log.open("ab") as out:
        out.write(f"\n--- {dt.datetime.now(dt.UTC).isoformat()} starting\n".encode())
        out.flush()
        proc = subprocess.Popen(  # noqa: S603 - ourselves, no shell
            args,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            env=dict(os.environ),
        )
    url = f"http://{settings.host}:{settings.port}"
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            _fail(f"the dev server exited ({proc.returncode}); last lines of {log}:\n" + _tail(log, 30), 1)
        state = running(settings.data_dir)
        code, _ = _health(url, 1.0)
        if state is not None and code == 200:
            _say(f"dev server running: {url}  (pid {proc.pid}; logs {log}; ./run dev:stop stops it)", "green")
            return
        time.sleep(0.3)
    _fail(f"the dev server did not become healthy in time; see {log}", 1)


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open(encoding="utf-8", errors="replace") as fh:
            return "".join(deque(fh, maxlen=lines))
    except OSError:
        return ""


def status() -> None:
    """Is the dev server running and healthy? (exit 0 yes, 1 no)."""
    from core import backup as ops
    from core.devserver import postmaster, read_state

    settings = get_settings()
    state = read_state(settings.data_dir)
    healthy = False
    if state is None or not state.alive:
        _say("dev server: not running" + (" (stale state file)" if state else ""), "yellow")
    else:
        code, body = _health(state.url)
        healthy = code == 200
        _say(
            f"dev server: running, pid {state.pid}, {state.url}, since {state.started_at};"
            f" /health {code or body}",
            "green" if healthy else "red",
        )
        _say(f"  logs: {state.log or 'in the terminal that started it (./run dev in the foreground)'}")
    pgdata = Path(state.pgdata) if state and state.pgdata else settings.data_dir.resolve() / "pg"
    pm = postmaster(pgdata)
    _say(f"embedded postgres ({pgdata}): " + (f"running, pid {pm[0]}" if pm else "not running"))
    backups = ops.known_backups(settings.backup_dir.resolve())
    if backups:
        m = ops.Manifest.read(backups[-1] / ops.MANIFEST_FILE)
        _say(f"latest backup: {backups[-1]} ({_age(m.created_at)}, {m.total_rows} rows)")
    else:
        _say(f"latest backup: none in {settings.backup_dir.resolve()}", "yellow")
    if not healthy:
        raise typer.Exit(1)


def stop() -> None:
    """Stop the dev server and leave no embedded PostgreSQL behind."""
    from core.devserver import clear_state, postmaster, read_state, stop_postgres, stop_process

    settings = get_settings()
    state = read_state(settings.data_dir)
    if state is not None:
        outcome = stop_process(state.pid)
        _say(f"dev server (pid {state.pid}): {outcome}")
        clear_state(settings.data_dir)
    else:
        _say("dev server: not running")
    pgdata = Path(state.pgdata) if state and state.pgdata else settings.data_dir.resolve() / "pg"
    # The server's exit stops PostgreSQL; if it died hard (kill -9), nothing did: stop it here.
    for _ in range(50):
        if postmaster(pgdata) is None:
            break
        time.sleep(0.1)
    if postmaster(pgdata) is not None:
        stop_postgres(pgdata)
        _say(f"embedded postgres ({pgdata}): stopped (it had outlived the server)")
    if postmaster(pgdata) is not None:
        _fail(f"embedded postgres on {pgdata} is still running", 1)
    _say("nothing left running", "green")


def logs(
    lines: Annotated[int, typer.Option("-n", "--lines", min=1, help="How many lines.")] = 100,
    follow: Annotated[bool, typer.Option("-f", "--follow", help="Keep printing new lines.")] = False,
    postgres: Annotated[
        bool, typer.Option("--postgres", help="The embedded PostgreSQL's log instead.")
    ] = False,
) -> None:
    """Print the dev server's log (of `./run dev:start`), or the embedded PostgreSQL's."""
    from core.devserver import log_path, read_state

    settings = get_settings()
    state = read_state(settings.data_dir)
    if postgres:
        pgdata = Path(state.pgdata) if state and state.pgdata else settings.data_dir.resolve() / "pg"
        path = pgdata / "log"
    else:
        path = Path(state.log) if state and state.log else log_path(settings.data_dir)
    if not path.exists():
        if state is not None and state.alive and not state.log:
            _fail(
                "the dev server runs in the foreground: its logs are in that terminal"
                " (./run dev:start detaches)"
            )
        _fail(f"no log at {path}")
    sys.stdout.write(_tail(path, lines))
    sys.stdout.flush()
    if not follow:
        return
    with path.open(encoding="utf-8", errors="replace") as fh:
        fh.seek(0, os.SEEK_END)
        try:
            while True:
                line = fh.readline()
                if line:
                    sys.stdout.write(line)
                    sys.stdout.flush()
                else:
                    time.sleep(0.25)
        except KeyboardInterrupt:
            return
