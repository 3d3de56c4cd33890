"""The `atlilith` command: dev, serve, relay, migrate, seed, mcp (stdio), token, and the operator
commands (generate, backup, restore, deploy, status, stop, logs) from `servers.ops_cli`, and
`admin promote|demote` from `servers.admin_cli`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
import uvicorn

from core.config import Settings, get_settings
from core.embedded import DATABASE, EmbeddedServer, ensure_database
from core.embedded import start as start_embedded
from core.errors import DomainError
from core.observability import configure_logging, get_logger

if TYPE_CHECKING:
    from core.uow import Database

cli = typer.Typer(
    name="atlilith",
    help="Atlilith: the platform for independent providers and their orgs.",
    no_args_is_help=True,
    add_completion=False,
)
log = get_logger("atlilith.cli")

PortOpt = Annotated[
    int | None, typer.Option("--port", envvar="ATLILITH_PORT", help="HTTP port (default 3040).")
]
HostOpt = Annotated[str | None, typer.Option("--host", envvar="ATLILITH_HOST", help="Bind address.")]


def _settings(**overrides: object) -> Settings:
    base = get_settings()
    clean = {k: v for k, v in overrides.items() if v is not None}
    return base.model_copy(update=clean) if clean else base


def _database(settings: Settings) -> tuple[Settings, EmbeddedServer | None]:
    """Use DATABASE_URL, or start (or join) the embedded PostgreSQL in the data dir."""
    from servers.cli_database import check_url

    for name, url in (
        ("DATABASE_URL", settings.database_url),
        ("ATLILITH_APP_DATABASE_URL", settings.app_database_url),
        ("ATLILITH_SYSTEM_DATABASE_URL", settings.system_database_url),
    ):
        if url and (problem := check_url(name, url)):
            _fail(problem)
    if settings.database_url:
        return settings, None
    server = start_embedded(settings.data_dir)
    url = server.url(DATABASE)
    asyncio.run(ensure_database(url, DATABASE))
    return settings.model_copy(update={"database_url": url}), server


def _operator_database(settings: Settings) -> tuple[Settings, EmbeddedServer | None]:
    """The database an operator command (token, mcp) acts on: DATABASE_URL; else the embedded
    one of this data dir when it has one; else the one dev server running from another data dir
    (its database and its JWT secret). Never a fresh, empty PostgreSQL."""
    from core import devserver

    if settings.database_url or (settings.data_dir.resolve() / "pg").exists():
        return _database(settings)
    others = devserver.running_elsewhere(devserver.runtime_dir(settings.runtime_dir), settings.data_dir)
    if len(others) == 1:
        typer.secho(f"using the dev server running from {others[0]} (ATLILITH_DATA_DIR)", err=True)
        return _database(settings.model_copy(update={"data_dir": others[0]}))
    if others:
        _fail(
            f"no database in {settings.data_dir.resolve()}, and dev servers run from "
            + ", ".join(map(str, others))
            + ": set ATLILITH_DATA_DIR to one of them (or DATABASE_URL)"
        )
    _fail(
        f"no database in {settings.data_dir.resolve()} and no dev server running: start ./run dev, "
        "or set DATABASE_URL (or ATLILITH_DATA_DIR to the server's data dir)"
    )
    raise AssertionError  # _fail exits


def _fail(message: str, code: int = 2) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _migrate(settings: Settings, rebind_secrets: bool = False) -> None:
    from core.migrate import migrate

    asyncio.run(migrate(settings, rebind_secrets=rebind_secrets))


def _verify_secrets(settings: Settings) -> None:
    """Refuse to go on, in one line, when this process's secrets are not the database's (or
    a secret production needs is unset)."""
    from core.secret_binding import verify_secrets
    from core.uow import Database

    async def run() -> None:
        db = Database(settings)
        try:
            await verify_secrets(db)
        finally:
            await db.dispose()

    try:
        asyncio.run(run())
    except RuntimeError as err:  # SecretMismatch, or "ATLILITH_JWT_SECRET must be set in production"
        _fail(str(err))


def _seed(settings: Settings, demo: bool = True) -> None:
    from core.seed import check_seed_password, seed
    from core.uow import Database
    from servers.registry_sync import sync_builtins

    try:
        check_seed_password(settings.seed_password or None)  # before any change, whatever the database holds
    except DomainError as err:
        _fail(f"{err.message}: {err.hint}")
    _verify_secrets(settings)  # the seed keys clients' ids and signs nothing it cannot share

    async def run() -> None:
        db = Database(settings)
        try:
            # The seed installs every built-in: the registry must know them first.
            await sync_builtins(db)
            report = await seed(db, settings.seed_password or None)
            demo_note = await _seed_demo(db) if demo else None
        finally:
            await db.dispose()
        if report.person_created:
            typer.secho("Seeded person transquinnftw, org cocotte, its brands and clients.", err=True)
        if report.generated_password:
            typer.secho(
                f"  sign in as transquinnftw with password: {report.generated_password}"
                "  (shown once; set ATLILITH_SEED_PASSWORD to choose it)",
                fg=typer.colors.YELLOW,
                err=True,
            )
        if report.password_unchanged:
            typer.secho(
                "  ATLILITH_SEED_PASSWORD left unchanged:"
                " transquinnftw already exists and keeps its password.",
                fg=typer.colors.YELLOW,
                err=True,
            )
        if report.credits_granted:
            typer.secho(
                f"  {settings.seed_credits} credits each for transquinnftw and cocotte "
                "(ATLILITH_SEED_CREDITS): `atlilith jobs run` works now.",
                err=True,
            )
        if demo_note:
            typer.secho(demo_note, err=True)

    asyncio.run(run())


async def _seed_demo(db: Database) -> str | None:
    """Demo threads, bookings, analytics and jobs (idempotent; marked as demo): what was added."""
    from core.demo import seed_demo_data

    r = await seed_demo_data(db)
    if not (r.threads or r.bookings or r.events or r.jobs):
        return None
    return (
        f"Demo data: {r.threads} threads, {r.drafts} agent drafts, {r.bookings} bookings,"
        f" {r.events} analytics events, {r.jobs} jobs (skip with `atlilith seed --no-demo`)."
    )


def _serve(settings: Settings, dev_state: tuple[Path | None, Path | None] | None = None) -> None:
    """Serve until stopped. `dev_state` = (log file, embedded pgdata): record this process in
    the data dir for `atlilith status|stop|logs` while it serves."""
    from core import devserver
    from servers.app import create_app

    _verify_secrets(settings)  # here, not in the app's start-up, to refuse without a traceback
    app = create_app(settings)
    base = f"http://{settings.host}:{settings.port}"
    typer.secho(
        f"Atlilith on {base}  ·  portal {base}/  ·  REST docs {base}/docs  ·  MCP {base}/mcp"
        "  ·  Ctrl-C stops",
        fg=typer.colors.GREEN,
        err=True,
    )
    runtime = devserver.runtime_dir(settings.runtime_dir)
    if dev_state is not None:
        devserver.write_state(settings.data_dir, base, *dev_state, runtime=runtime)
    try:
        uvicorn.run(
            app,
            host=settings.host,
            port=settings.port,
            log_config=None,
            access_log=False,
            lifespan="on",
            # Open event streams (GET /v1/events/stream, up to a minute each) would hold a
            # stop; their clients reconnect to the next process with their cursor.
            timeout_graceful_shutdown=5,
            # The client address is the peer's; X-Forwarded-For is believed only from
            # ATLILITH_TRUSTED_PROXIES (core.ratelimit), never from uvicorn's loopback default.
            proxy_headers=False,
        )
    finally:
        if dev_state is not None:
            devserver.clear_state(settings.data_dir, os.getpid(), runtime=runtime)


@cli.command()
def dev(
    port: PortOpt = None,
    host: HostOpt = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Run in the background, logging to <data dir>/dev.log.")
    ] = False,
    log_file: Annotated[Path | None, typer.Option("--log-file", hidden=True)] = None,
) -> None:
    """Start the database (embedded unless DATABASE_URL), migrate, seed, serve REST + MCP."""
    from servers.ops_cli import detach_dev, refuse_if_running

    settings = _settings(port=port, host=host)
    if detach:
        detach_dev(settings)
        return
    configure_logging(settings)
    refuse_if_running(settings)
    settings, server = _database(settings)
    _migrate(settings)
    _seed(settings)
    _serve(settings, dev_state=(log_file, server.pgdata if server else None))


@cli.command()
def serve(port: PortOpt = None, host: HostOpt = None) -> None:
    """Serve REST + MCP over HTTP (no migration, no seed)."""
    settings = _settings(port=port, host=host)
    configure_logging(settings)
    settings, _server = _database(settings)
    _serve(settings)


@cli.command()
def relay() -> None:
    """Run only the event relay and the schedulers (no HTTP): deliveries, retries, dead letters
    and cron jobs for the app processes, which then run with ATLILITH_RELAY_ENABLED=0."""
    settings = get_settings()
    configure_logging(settings)
    from servers.telemetry import configure_tracing

    configure_tracing()
    settings, _server = _database(settings)
    _verify_secrets(settings)  # handlers sign links and key client ids with the shared secrets
    asyncio.run(_run_relay(settings))


async def _run_relay(settings: Settings) -> None:
    import signal

    from core.events import process_id
    from core.relay import Relay, Sink
    from core.uow import Database

    db = Database(settings)
    sink: Sink | None = None
    if settings.inngest_enabled:
        from servers import inngest as inngest_door

        sink = inngest_door.InngestSink(inngest_door.make_client(settings))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    relay = Relay(db, sink)

    def announce() -> None:
        # After the first pass, not before: whoever waits for this line (an operator, the
        # two-relay resilience scenario) can count on this process taking work from now on.
        log.info("relay_started", process=process_id(), inngest=sink is not None)
        typer.secho(
            f"Atlilith relay {process_id()}:"
            f" {'publishing to Inngest' if sink else 'delivering in-process'}  ·  Ctrl-C stops",
            fg=typer.colors.GREEN,
            err=True,
        )

    try:
        await relay.run(stop, on_ready=announce)
    finally:
        await db.dispose()


@cli.command()
def migrate(
    rebind_secrets: Annotated[
        bool,
        typer.Option(
            "--rebind-secrets",
            help="Make this process's JWT and identity secrets the database's (a deliberate rotation:"
            " stop every process first; tokens and links signed with the old JWT secret stop"
            " working, and polyseme ids change with the identity secret).",
        ),
    ] = False,
) -> None:
    """Create roles (when allowed) and apply migrations as the owner role."""
    settings = get_settings()
    configure_logging(settings)
    settings, _server = _database(settings)
    _migrate(settings, rebind_secrets)
    typer.secho("Database is up to date.", err=True)
    if rebind_secrets:
        typer.secho("Secrets rebound: every process must now use these.", fg=typer.colors.YELLOW, err=True)


@cli.command()
def seed(
    no_demo: Annotated[
        bool, typer.Option("--no-demo", help="Only the bootstrap data: no demo threads, bookings, events.")
    ] = False,
) -> None:
    """Create the bootstrap data and the demo data (idempotent)."""
    settings = get_settings()
    configure_logging(settings)
    settings, _server = _database(settings)
    _seed(settings, demo=not no_demo)


@cli.command()
def mcp(
    toolsets: Annotated[
        str | None, typer.Option("--toolsets", envvar="ATLILITH_TOOLSETS", help="Comma-separated, or 'all'.")
    ] = None,
    read_only: Annotated[bool, typer.Option("--read-only", help="Serve only read tools.")] = False,
) -> None:
    """MCP over stdio for a local agent. Identity: ATLILITH_TOKEN (session token or API key)."""
    settings = get_settings()
    configure_logging(settings)
    from servers.telemetry import configure_tracing

    configure_tracing()
    if not settings.token:
        _fail("set ATLILITH_TOKEN to an access token or API key (see `atlilith token --help`)")
    settings, _server = _operator_database(settings)
    names = [t.strip() for t in toolsets.split(",") if t.strip()] if toolsets else None
    _verify_secrets(settings)
    asyncio.run(_run_stdio(settings, names, read_only or settings.read_only))


async def _run_stdio(settings: Settings, toolsets: list[str] | None, read_only: bool) -> None:
    from core.opener import open_context
    from core.relay import Relay
    from core.uow import Database
    from servers.mcp import build_server
    from servers.mcp_changes import ToolListChanges

    db = Database(settings)
    assert settings.token is not None
    try:
        async with db.uow() as uow:
            ctx = await open_context(uow, settings.token, person_level=True)
        log.info("mcp_stdio_identity", person=ctx.person_slug)
    except DomainError as err:
        await db.dispose()
        _fail(f"ATLILITH_TOKEN was refused: {err.code}: {err.message}")
    from servers.registry_sync import sync_registry

    await sync_registry(db)
    try:
        server = build_server(db, static_token=settings.token, toolset_names=toolsets, read_only=read_only)
    except ValueError as exc:
        await db.dispose()
        _fail(str(exc))
    stop = asyncio.Event()
    relay_task = (
        asyncio.create_task(Relay(db).run(stop))
        if settings.relay_enabled and not settings.inngest_enabled
        else None
    )
    changes = ToolListChanges(db)
    changes.attach(server)
    changes_task = await changes.started(stop)
    try:
        await server.run_stdio_async()
    finally:
        stop.set()
        if relay_task is not None:
            await relay_task
        await changes_task
        await db.dispose()


@cli.command()
def token(
    person: Annotated[str, typer.Option("--person", help="Slug of the person.")],
    org: Annotated[str | None, typer.Option("--org", help="Act in this org (slug).")] = None,
    ttl_minutes: Annotated[int, typer.Option("--ttl-minutes", min=1, max=60 * 24 * 30)] = 60 * 24,
) -> None:
    """Print a session token for a local operator (needs database access)."""
    settings = get_settings()
    configure_logging(settings)

    async def run() -> str:
        from core.tenancy import operator_token
        from core.uow import Database

        db = Database(settings)
        try:
            out = await operator_token(
                db, person.lower(), org.lower() if org else None, dt.timedelta(minutes=ttl_minutes)
            )
            return out.access_token
        finally:
            await db.dispose()

    try:
        settings, _server = _operator_database(settings)
        _verify_secrets(settings)  # a token signed with another secret would be refused
        sys.stdout.write(asyncio.run(run()) + "\n")
    except typer.Exit:
        raise
    except DomainError as err:
        from servers.cli_database import domain_line

        _fail(domain_line(err))
    except Exception as exc:
        # A database that is not Atlilith's (not migrated, wrong server): one line, no traceback.
        # Anything else is a bug, and keeps its traceback.
        from servers.cli_database import database_problem

        problem = database_problem(exc, reads_schema=True)
        if problem is None:
            raise
        _fail(problem)


# The commands that read Atlilith's tables without migrating first: a table missing there means
# a database never migrated. In dev, migrate and restore, which migrate, it is a bug.
_READS_SCHEMA = frozenset({"serve", "relay", "seed", "mcp", "token", "backup", "admin"})


def _reads_schema(args: list[str]) -> bool:
    # The command is the first word: the top level takes no option with a value.
    return next((a for a in args if not a.startswith("-")), "") in _READS_SCHEMA


def main() -> None:
    from servers.cli_database import database_problem

    try:
        cli()
    except Exception as exc:
        # Any command that reaches the database (migrate, seed, serve, relay, mcp, backup, admin,
        # ...) answers an unusable one in one line; anything else keeps its traceback.
        problem = database_problem(exc, reads_schema=_reads_schema(sys.argv[1:]))
        if problem is None:
            raise
        typer.secho(problem, fg=typer.colors.RED, err=True)
        sys.exit(2)


def _register_ops() -> None:
    from servers import admin_cli, ops_cli

    ops_cli.register(cli)
    admin_cli.register(cli)


def _register_client() -> None:
    from servers import client_cli

    client_cli.register(cli)


_register_ops()
_register_client()


def _register_skills() -> None:
    from servers import skills_cli

    skills_cli.register(cli)


_register_skills()


if __name__ == "__main__":
    main()
