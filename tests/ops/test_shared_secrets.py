"""One set of secrets across processes: processes started together on a fresh data dir agree
on the generated secrets, and a process whose secret differs from the database's refuses to
start (naming the setting and the fix) instead of splitting tokens and polyseme ids."""

from __future__ import annotations

import asyncio
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine

from core.config import Settings
from core.db import asyncpg_url
from core.migrate import create_database, drop_database, migrate
from core.secret_binding import SecretMismatch, verify_secrets
from core.uow import Database
from servers.app import create_app
from tests.conftest import running
from tests.support.processes import clean_env
from tests.support.serving import free_port

ROOT = Path(__file__).resolve().parents[2]
RACERS, ROUNDS = 6, 5

# Each racer resolves both secrets of the data dir it reads on stdin, as a starting process does.
RACER = """
import sys
from pathlib import Path
from core.config import Settings
for line in sys.stdin:
    s = Settings(env="dev", data_dir=Path(line.strip()))
    print(s.resolved_jwt_secret(), s.resolved_identity_secret(), flush=True)
"""


def test_processes_racing_on_a_fresh_data_dir_create_one_set_of_secrets(tmp_path: Path) -> None:
    racers = [
        subprocess.Popen(
            [sys.executable, "-c", RACER],
            cwd=ROOT,
            env=clean_env(),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(RACERS)
    ]
    try:
        for n in range(ROUNDS):
            data_dir = tmp_path / f"round-{n}"
            # Imported and waiting: the lines go out back to back, so the racers collide.
            for proc in racers:
                assert proc.stdin is not None
                proc.stdin.write(f"{data_dir}\n")
                proc.stdin.flush()
            answers = set()
            for proc in racers:
                assert proc.stdout is not None
                answers.add(proc.stdout.readline().strip())
            assert len(answers) == 1, f"round {n}: {len(answers)} different sets of secrets"
            jwt_secret, identity_secret = answers.pop().split(" ")
            assert len(jwt_secret) >= 60 and len(identity_secret) >= 60 and jwt_secret != identity_secret
            # The two secrets and nothing else (no temporary file left behind), owner-only.
            assert sorted(p.name for p in data_dir.iterdir()) == ["identity-secret", "jwt-secret"]
            for name, value in (("jwt-secret", jwt_secret), ("identity-secret", identity_secret)):
                assert (data_dir / name).read_text() == value
                assert (data_dir / name).stat().st_mode & 0o777 == 0o600
    finally:
        for proc in racers:
            assert proc.stdin is not None
            proc.stdin.close()
            proc.wait(30)


@pytest.fixture(scope="module")
async def fresh(settings: Settings) -> AsyncIterator[Settings]:
    """A database of its own, just migrated: no process has used it yet."""
    assert settings.database_url
    name = f"atl_secrets_{secrets.token_hex(3)}"
    await create_database(settings.database_url, name)
    url = make_url(settings.database_url).set(database=name).render_as_string(hide_password=False)
    s = Settings(env="test", database_url=url, password_hash_profile="cheapest", log_level="warning")
    await migrate(s)
    try:
        yield s
    finally:
        await drop_database(settings.database_url, name)


async def forget_fingerprints(s: Settings) -> None:
    """Back to a database no process has started on (each test starts from there)."""
    assert s.database_url
    engine = create_async_engine(asyncpg_url(s.database_url))
    try:
        async with engine.begin() as conn:
            await conn.execute(text("DELETE FROM platform_private.secret_fingerprints"))
    finally:
        await engine.dispose()


def atlilith(s: Settings, data_dir: Path, *args: str, **env: str) -> subprocess.Popen[str]:
    assert s.database_url
    return subprocess.Popen(
        [sys.executable, "-m", "servers.cli", *args],
        cwd=ROOT,
        env=clean_env(
            DATABASE_URL=s.database_url,
            ATLILITH_DATA_DIR=str(data_dir),
            ATLILITH_PASSWORD_HASH_PROFILE="cheapest",
            ATLILITH_BILLING_STARTING_CREDITS="10",
            ATLILITH_LOG_LEVEL="warning",
            **env,
        ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@contextmanager
def serving(s: Settings, data_dir: Path, count: int) -> Iterator[list[str]]:
    """`count` real `atlilith serve` processes started together; their base URLs once all are up."""
    ports = [free_port() for _ in range(count)]
    procs = [atlilith(s, data_dir, "serve", ATLILITH_PORT=str(port)) for port in ports]
    urls = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 180  # generous: the machine may be busy with other suites
        for proc, url in zip(procs, urls, strict=True):
            while True:
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.terminate()
                    raise AssertionError(f"{url} did not start: {proc.communicate(timeout=30)[1][-3000:]}")
                time.sleep(0.2)
        yield urls
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate(timeout=10)


def refused(s: Settings, data_dir: Path, **env: str) -> str:
    """Start `atlilith serve` expecting a refusal; its stderr."""
    proc = atlilith(s, data_dir, "serve", ATLILITH_PORT=str(free_port()), **env)
    try:
        _out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("a process with another secret started and served") from None
    assert proc.returncode == 2, err[-3000:]
    return err


async def test_two_servers_started_together_accept_each_others_tokens(
    fresh: Settings, tmp_path: Path
) -> None:
    await forget_fingerprints(fresh)
    data_dir = tmp_path / "data"
    with serving(fresh, data_dir, 2) as (one, two):
        async with httpx.AsyncClient(timeout=30) as http:
            signup = await http.post(
                one + "/v1/auth/signup",
                json={
                    "email": "racer@example.com",
                    "password": "pw-" + secrets.token_hex(8),
                    "slug": "racer-" + secrets.token_hex(3),
                    "display_name": "Racer",
                },
            )
            assert signup.status_code == 201, signup.text
            token = signup.json()["access_token"]
            # The token minted by one is accepted by the other; the same email gets the same
            # polyseme id from both, so both key ids with one identity secret.
            installed = await http.post(
                two + "/v1/installations",
                json={"component": "identity"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert installed.status_code == 201, installed.text
            # The starting credits arrive through the relay (a handler of the sign-up's event);
            # a resolve sent before them is refused for want of credits, not for the secrets.
            await _credited(http, one, token)
            ids = []
            for url in (one, two, one):
                r = await http.post(
                    url + "/v1/identity/resolve-person",
                    json={"email": "Ada@Example.com"},
                    headers={"Authorization": f"Bearer {token}"},
                )
                assert r.status_code == 200, r.text
                ids.append(r.json()["polyseme_id"])
            assert len(set(ids)) == 1
            refresh = await http.post(
                two + "/v1/auth/refresh", json={"refresh_token": signup.json()["refresh_token"]}
            )
            assert refresh.status_code == 200, refresh.text
            me = await http.get(
                one + "/v1/me", headers={"Authorization": f"Bearer {refresh.json()['access_token']}"}
            )
            assert me.status_code == 200, me.text

    jwt_secret = (data_dir / "jwt-secret").read_text()
    # Another JWT secret on the same database: refused before serving, in words, no traceback.
    err = refused(fresh, data_dir, ATLILITH_JWT_SECRET="another-" + "z" * 40)
    assert "secret_mismatch" in err and "ATLILITH_JWT_SECRET" in err and "--rebind-secrets" in err
    assert "Traceback" not in err and jwt_secret not in err
    # A second machine given the JWT secret but not the identity secret: its data dir generates
    # another one, refused too.
    err = refused(fresh, tmp_path / "elsewhere", ATLILITH_JWT_SECRET=jwt_secret)
    assert "secret_mismatch" in err and "ATLILITH_IDENTITY_SECRET" in err and "Traceback" not in err
    assert str(tmp_path / "elsewhere" / "identity-secret") in err


async def _credited(http: httpx.AsyncClient, base: str, token: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        r = await http.get(base + "/v1/credits", headers={"Authorization": f"Bearer {token}"})
        assert r.status_code == 200, r.text
        if r.json()["available"] > 0:
            return
        assert time.monotonic() < deadline, "the starting credits never arrived"
        await asyncio.sleep(0.05)


async def test_a_rotation_is_deliberate_and_every_door_refuses_the_old_secret(fresh: Settings) -> None:
    await forget_fingerprints(fresh)
    first = fresh.model_copy(update={"jwt_secret": "first-" + "a" * 40, "identity_secret": "id-" + "b" * 40})
    second = first.model_copy(update={"jwt_secret": "second-" + "c" * 40})

    async def verify(s: Settings) -> bool:
        db = Database(s)
        try:
            return await verify_secrets(db)
        finally:
            await db.dispose()

    assert await verify(first)  # the first to start records its secrets
    with pytest.raises(SecretMismatch, match="ATLILITH_JWT_SECRET"):
        await verify(second)
    # An app started by another host than the CLI refuses in its start-up.
    app = create_app(second, run_relay=False)
    with pytest.raises(SecretMismatch):
        async with running(app):
            pass
    # The operator rotates on purpose: from then on the new secret is the database's.
    await migrate(second, rebind_secrets=True)
    assert await verify(second)
    with pytest.raises(SecretMismatch, match="ATLILITH_JWT_SECRET"):
        await verify(first)
    # A database that cannot be reached is not a mismatch: the process starts and checks next time.
    down = second.model_copy(update={"database_url": "postgresql://nobody@127.0.0.1:1/none"})
    assert await verify(down) is False
