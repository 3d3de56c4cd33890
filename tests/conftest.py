"""Tests run against a real PostgreSQL: DATABASE_URL's server when set (CI), else the embedded
one. Each test session gets its own fresh database, migrated, and dropped at the end."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from benchmarks.common import quiet_settings
from core.config import Settings
from core.embedded import DATABASE, ensure_database
from core.embedded import start as start_embedded
from core.migrate import create_database, drop_database, migrate
from core.uow import Database
from tests.support import handlers as _test_handlers  # noqa: F401  (registers probe handlers)

if TYPE_CHECKING:
    from tests.cli.live import LiveServer

ROOT = Path(__file__).resolve().parent.parent
# Under pytest-xdist each worker ("gw0", "gw1", ...) is a session of its own: what a session
# keeps on disk (its embedded PostgreSQL, its data and backup dir) gets the worker's name, so
# two sessions never start one PostgreSQL data dir twice or list each other's backups.
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
SESSION_DIR = ROOT / ".atlilith" / ("test-" + WORKER if WORKER else "test")
# Tests whose session-scoped fixtures are costly to start twice run on one worker together:
# the portal's live server and headless Chromium.
SHARED_SESSION = {ROOT / "tests" / "portal": "portal"}
# The longest groups (minutes each, `--durations`) are handed out first: one started near the
# end would keep its worker busy long after the other finished.
# The seeded person's password in the session database. Several tests seed it, and a seed
# keeps the password of a person it finds, so they all say the same: the first to run sets it,
# and the order they run in (different on each xdist worker) cannot matter.
SEED_PASSWORD = "seed-password-1"
LONGEST_FIRST = (
    "tests/ops/test_benchmarks_smoke.py",
    "tests/resilience/test_resilience.py",
    "portal",
    "tests/resilience/test_fuzz.py",
    "tests/ops/test_backup.py",
    "tests/ops/test_devserver.py",
    "tests/ops/test_operator_token.py",
    "tests/ops/test_shared_secrets.py",
)


def _admin_url() -> str:
    url = os.environ.get("DATABASE_URL")
    if url:
        return url
    server = start_embedded(SESSION_DIR)
    return server.url(DATABASE)


# First: xdist's own hook reads the groups into the test ids, and it was registered after us.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """On an xdist worker (`--dist loadgroup`), a test module is one group, run on one worker:
    its module-scoped fixtures (a live server process, a messaging database) start once, and
    the tests of a module that share a fixed data dir (the resilience scenarios', the restore
    drill's) never run side by side. A directory in SHARED_SESSION is one group."""
    if not WORKER:
        return
    groups: dict[pytest.Item, str] = {}
    for item in items:
        path = item.path
        shared = next((g for d, g in SHARED_SESSION.items() if path.is_relative_to(d)), None)
        groups[item] = shared or str(path.relative_to(ROOT))
        item.add_marker(pytest.mark.xdist_group(groups[item]))
    # Sorted by rank alone (stable): every group's tests keep their order.
    rank = {group: i for i, group in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(groups[item], len(rank)))


def app_settings(database_url: str, **overrides: Any) -> Settings:
    """Settings of an app under test on `database_url`: cheap password hashing, no relay,
    quiet JSON logs."""
    return quiet_settings(database_url, "test-secret-" + "x" * 40, **overrides)


@pytest.fixture(scope="session", autouse=True)
def logs_as_json() -> None:
    """Log as the server processes do off a terminal (JSON lines). Unconfigured, structlog
    renders every logged exception as a rich traceback with each frame's locals: seconds per
    exception, and the suite logs hundreds (the unreachable-database test spent 16 s in it)."""
    import structlog

    # Every level still reaches a test's `capture_logs`; stdlib logging is left as pytest has it.
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )


@pytest.fixture(scope="session", autouse=True)
def built_tools_once() -> Iterator[None]:
    """Build each distinct list of MCP tools once per session. A server process builds its
    tools once at start-up, but tests build hundreds of apps and MCP servers, and turning 60+
    tool functions into SDK tools (pydantic models, JSON schemas) is most of `create_app`'s
    cost. The tools depend only on their specs (runtime state lives in the server's
    `ToolRuntime`), so a list built from the very same specs is handed out again; any other
    list (a subset, a test's own toolset) is built the ordinary way, then kept too."""
    from servers import mcp

    build = mcp._tools
    # Keyed by the specs' identities; the specs are kept so an id cannot be reused meanwhile.
    built: dict[tuple[int, ...], tuple[list[Any], list[Any]]] = {}

    def once(specs: list[Any]) -> list[Any]:
        key = tuple(id(spec) for spec in specs)
        if key not in built:
            built[key] = (list(specs), build(specs))
        return list(built[key][1])

    mp = pytest.MonkeyPatch()
    mp.setattr(mcp, "_tools", once)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture(scope="session")
async def settings() -> AsyncIterator[Settings]:
    admin = _admin_url()
    if not os.environ.get("DATABASE_URL"):
        await ensure_database(admin, DATABASE)
    name = f"atlilith_test_{secrets.token_hex(4)}"
    await create_database(admin, name)
    from sqlalchemy.engine import make_url

    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    s = app_settings(
        url,
        data_dir=SESSION_DIR / "data",
        backup_dir=SESSION_DIR / "data" / "backups",
        mcp_allowed_hosts=["127.0.0.1:*", "localhost:*", "testserver", "test"],
        mcp_allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://testserver"],
        handler_backoff_base_seconds=0.01,
        handler_backoff_max_seconds=0.02,
        handler_max_attempts=3,
        login_max_failures=5,
        # Short event-stream connections: route sweeps call GET /v1/events/stream and the
        # in-process transport waits for its end; the portal's reader reconnects meanwhile.
        events_stream_seconds=2.0,
        events_stream_poll_seconds=0.2,
        # Tests drive the API far faster than any person; tests/servers/test_rate_limits.py
        # proves the limits with small ones of its own.
        rate_limit_per_credential="1000000/minute",
        rate_limit_per_ip="1000000/minute",
        rate_limit_signin_per_ip="1000000/minute",
        rate_limit_public_per_ip="1000000/minute",
        rate_limit_public_per_target="1000000/minute",
    )
    await migrate(s)
    try:
        yield s
    finally:
        await drop_database(admin, name)


@pytest.fixture(scope="session")
async def db(settings: Settings) -> AsyncIterator[Database]:
    database = Database(settings)
    from servers.registry_sync import sync_builtins

    # What a server's start-up does: the registry knows every built-in before any test.
    await sync_builtins(database)
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture
async def app(db: Database) -> AsyncIterator[Any]:
    from servers.app import create_app

    application = create_app(db.settings, db=db, run_relay=False)
    async with running(application):
        yield application


@asynccontextmanager
async def running(application: Any) -> AsyncIterator[None]:
    """Run the app's lifespan in its own task: it holds anyio cancel scopes (the MCP session
    manager) that must be exited by the task that entered them."""
    started, stop = asyncio.Event(), asyncio.Event()
    failure: list[BaseException] = []

    async def lifespan() -> None:
        try:
            async with application.router.lifespan_context(application):
                started.set()
                await stop.wait()
        except BaseException as exc:
            failure.append(exc)
            started.set()
            raise

    task = asyncio.create_task(lifespan())
    await started.wait()
    if failure:
        raise failure[0]
    try:
        yield
    finally:
        stop.set()
        await task


@pytest.fixture
async def client(app: Any) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as c:
        yield c


@pytest.fixture(scope="module")
async def mdb(db: Database) -> AsyncIterator[Database]:
    """The test database with a platform that lets contexts use messaging peers on 127.0.0.1."""
    from tests.support.messaging import messaging_database

    async with messaging_database(db) as database:
        yield database


@pytest.fixture
async def mc(mdb: Database) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the app on `mdb`."""
    from tests.support.serving import app_client

    async with app_client(mdb) as c:
        yield c


@pytest.fixture(scope="module")
def live(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """A real server in its own process on the test database (`tests.cli.live`), one per module."""
    from tests.cli.live import LiveServer

    server = LiveServer(settings, tmp_path_factory.mktemp("live") / "server.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


def slug(prefix: str = "p") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


class Account:
    """A signed-up person, as the API returned them."""

    def __init__(self, data: dict[str, Any], password: str) -> None:
        self.data = data
        self.password = password
        self.token: str = data["access_token"]
        self.refresh: str = data["refresh_token"]
        self.slug: str = data["person"]["slug"]
        self.id: str = data["person"]["id"]
        self.email: str = data["person"]["email"]

    def h(self, org: str | None = None, token: str | None = None) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {token or self.token}"}
        if org:
            headers["X-Atlilith-Org"] = org
        return headers


async def signup(client: httpx.AsyncClient, prefix: str = "p") -> Account:
    s = slug(prefix)
    password = "pw-" + secrets.token_hex(8)
    r = await client.post(
        "/v1/auth/signup",
        json={"email": f"{s}@example.com", "password": password, "slug": s, "display_name": s.title()},
    )
    assert r.status_code == 201, r.text
    return Account(r.json(), password)


async def make_org(client: httpx.AsyncClient, owner: Account, prefix: str = "o") -> str:
    s = slug(prefix)
    r = await client.post("/v1/orgs", json={"slug": s, "name": s.upper()}, headers=owner.h())
    assert r.status_code == 201, r.text
    return s


async def join_org(
    client: httpx.AsyncClient, org: str, by: Account, who: Account, role: str = "member"
) -> dict[str, Any]:
    """`who` joins `org` as everyone does: `by` (its owner or an admin) invites them and they
    accept. Returns the membership."""
    invited = await client.post(
        f"/v1/orgs/{org}/invitations", json={"person": who.slug, "role": role}, headers=by.h()
    )
    assert invited.status_code == 201, invited.text
    accepted = await client.post(f"/v1/invitations/{invited.json()['id']}/accept", headers=who.h())
    assert accepted.status_code == 200, accepted.text
    member: dict[str, Any] = accepted.json()
    return member
