"""The `atlilith` client commands against a live server on 127.0.0.1."""

from __future__ import annotations

import datetime as dt
import json
import os
import stat
import subprocess
import sys
import uuid

import httpx
import jwt

from core.config import Settings
from servers import client_cli
from tests.cli.live import Cli, LiveServer, no_traceback, one_json
from tests.conftest import ROOT, make_org, signup
from tests.support.billing import grant, make_admin
from tests.support.registry import install
from tests.support.serving import free_port


async def test_login_stores_the_credential_privately_and_whoami_reads_it(
    atl: Cli, http: httpx.AsyncClient
) -> None:
    a = await signup(http)
    org = await make_org(http, a)
    result = atl.login(a.slug, a.password)
    assert f"Signed in to {atl.server}" in result.stdout and a.slug in result.stdout
    assert a.password not in result.output

    assert stat.S_IMODE(atl.config_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(atl.config_dir.stat().st_mode) == 0o700
    assert [p.name for p in atl.config_dir.iterdir()] == ["config.json"]  # no temp file left over
    saved = json.loads(atl.config_file.read_text())
    assert saved["default_server"] == atl.server
    entry = saved["servers"][atl.server]
    assert entry["kind"] == "session" and entry["person"] == a.slug and entry["refresh_token"]
    assert entry["token"] not in result.output

    human = atl("whoami")
    assert human.exit_code == 0, human.output
    assert a.slug in human.stdout and "personal" in human.stdout
    assert org in human.stdout and "owner" in human.stdout

    doc = one_json(atl("whoami", "--json"))
    assert doc["server"] == atl.server and doc["person"]["slug"] == a.slug
    assert doc["context"]["kind"] == "personal"
    assert [(m["org"]["slug"], m["role"]) for m in doc["memberships"]] == [(org, "owner")]


async def test_a_wrong_password_is_a_clear_auth_error_and_stores_nothing(
    atl: Cli, http: httpx.AsyncClient
) -> None:
    a = await signup(http)
    result = atl("login", "--server", atl.server, "--login", a.slug, "--password-stdin", input="wrong\n")
    assert result.exit_code == client_cli.EXIT_AUTH == 4
    no_traceback(result)
    assert "refused" in result.stderr and "atlilith login" in result.stderr
    assert result.stdout == ""
    assert not atl.config_file.exists()

    as_json = atl(
        "login", "--server", atl.server, "--login", a.slug, "--password-stdin", "--json", input="wrong\n"
    )
    assert as_json.exit_code == 4
    assert one_json(as_json)["error"]["status"] == 401


async def test_login_with_an_api_key_and_a_refused_key(atl: Cli, http: httpx.AsyncClient) -> None:
    a = await signup(http)
    r = await http.post("/v1/api-keys", json={"name": "cli", "scopes": ["*"]}, headers=a.h())
    assert r.status_code == 201, r.text
    key = r.json()["token"]
    ok = atl("login", "--server", atl.server, "--api-key", key, "--json")
    assert ok.exit_code == 0, ok.output
    assert one_json(ok)["credential"] == "api_key" and key not in ok.stdout
    assert json.loads(atl.config_file.read_text())["servers"][atl.server]["kind"] == "api_key"
    assert one_json(atl("whoami", "--json"))["credential"]["kind"] == "api_key"

    bad = atl("login", "--server", atl.server, "--api-key", "atl_not-a-real-key")
    assert bad.exit_code == 4 and "refused the credential" in bad.stderr
    no_traceback(bad)
    # The good key is still the stored one.
    assert json.loads(atl.config_file.read_text())["servers"][atl.server]["token"] == key


async def test_org_switches_the_context_and_a_foreign_org_is_refused(
    atl: Cli, http: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    a, b = await signup(http), await signup(http)
    mine, theirs = await make_org(http, a), await make_org(http, b)
    admin = await make_admin(client)
    await grant(client, admin, 7, org=mine)
    await grant(client, admin, 3, person=a.slug)
    atl.login(a.slug, a.password)

    in_org = one_json(atl("whoami", "--org", mine, "--json"))
    assert in_org["context"]["kind"] == "org" and in_org["context"]["org"]["slug"] == mine
    assert in_org["context"]["role"] == "owner"
    assert one_json(atl("whoami", "--org", "personal", "--json"))["context"]["kind"] == "personal"
    assert one_json(atl("credits", "--org", mine, "--json"))["available"] == 7
    assert one_json(atl("credits", "--json"))["available"] == 3

    refused = atl("credits", "--org", theirs)
    assert refused.exit_code == client_cli.EXIT_FORBIDDEN == 5
    no_traceback(refused)
    assert "not allowed" in refused.stderr and "not_a_member" in refused.stderr and theirs in refused.stderr
    assert refused.stdout == ""
    err = one_json(atl("whoami", "--org", theirs, "--json"))["error"]
    assert err["code"] == "not_a_member" and err["status"] == 403 and err["hint"]

    # A context chosen at login is the default, and --org still wins over it.
    atl.login(a.slug, a.password, "--org", mine)
    assert one_json(atl("whoami", "--json"))["context"]["org"]["slug"] == mine
    assert one_json(atl("whoami", "--org", "personal", "--json"))["context"]["kind"] == "personal"


async def test_jobs_run_wait_get_list_and_credits(
    atl: Cli, http: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    a = await signup(http)
    admin = await make_admin(client)
    await grant(client, admin, 10, person=a.slug)
    await install(http, a, "identity")
    atl.login(a.slug, a.password)

    run_ann = ("jobs", "run", "identity", "resolve-person", "--input", '{"email": "Ann@Example.com"}')
    ran = atl(*run_ann, "--wait", "--json")
    assert ran.exit_code == 0, ran.output
    doc = one_json(ran)
    job = doc["job"]
    assert uuid.UUID(doc["idempotency_key"]) and doc["accepted"]["job_id"] == job["id"]
    assert job["status"] == "succeeded" and job["output"]["polyseme_id"]
    assert job["credits_captured"] == 1

    # The same key again: the server answers with the first job instead of running a second.
    again = one_json(atl(*run_ann, "--idempotency-key", doc["idempotency_key"], "--json"))
    assert again["accepted"]["job_id"] == job["id"]

    got = one_json(atl("jobs", "get", job["id"], "--json"))
    assert got["id"] == job["id"] and got["status"] == "succeeded"
    listed = one_json(atl("jobs", "list", "--json"))
    assert [j["id"] for j in listed["items"]] == [job["id"]]
    table = atl("jobs", "list")
    assert table.exit_code == 0 and job["id"] in table.stdout and "succeeded" in table.stdout

    human = atl("jobs", "run", "identity", "resolve-person", "--input", '{"handle": "@ann"}', "--wait")
    assert human.exit_code == 0, human.output
    assert (
        "Idempotency-Key:" in human.stdout and "succeeded" in human.stdout and "polyseme_id" in human.stdout
    )

    balance = one_json(atl("credits", "--ledger", "--json"))
    assert balance["balance"] == 8 and balance["available"] == 8 and balance["held"] == 0
    kinds = [e["kind"] for e in balance["ledger"]["items"]]
    assert kinds.count("capture") == 2 and kinds.count("grant") == 1
    shown = atl("credits", "--ledger")
    assert shown.exit_code == 0 and "8" in shown.stdout and "capture" in shown.stdout


async def test_job_failures_and_refusals_have_their_own_exit_codes(
    atl: Cli, http: httpx.AsyncClient, client: httpx.AsyncClient
) -> None:
    a = await signup(http)
    atl.login(a.slug, a.password)
    # Not installed in the context it acts in: refused before anything is priced or held.
    absent = atl("jobs", "run", "identity", "resolve-person", "--input", '{"email": "a@example.com"}')
    assert absent.exit_code == client_cli.EXIT_FORBIDDEN == 5
    assert "component_not_installed" in absent.stderr and "atlilith add" in absent.stderr
    no_traceback(absent)
    await install(http, a, "identity")
    broke = atl("jobs", "run", "identity", "resolve-person", "--input", '{"email": "a@example.com"}')
    assert broke.exit_code == client_cli.EXIT_PROBLEM == 7
    assert "insufficient_credits" in broke.stderr
    no_traceback(broke)

    admin = await make_admin(client)
    await grant(client, admin, 10, person=a.slug)
    failed = atl("jobs", "run", "tests", "refuse", "--wait", "--json")
    assert failed.exit_code == client_cli.EXIT_FAILED == 1
    assert one_json(failed)["job"]["status"] == "failed"

    bad_input = atl("jobs", "run", "identity", "resolve-person", "--input", "{nope")
    assert bad_input.exit_code == 2 and "not valid JSON" in bad_input.stderr
    invalid = atl("jobs", "run", "identity", "resolve-person", "--input", '{"email": 5}')
    assert invalid.exit_code == 7 and "email" in invalid.stderr
    # The hint names what shows an action's input schema (the search shows none).
    assert "GET /v1/actions" in invalid.stderr and "atlilith search" not in invalid.stderr
    missing = atl("jobs", "get", str(uuid.uuid4()))
    assert missing.exit_code == client_cli.EXIT_NOT_FOUND == 6
    not_an_id = atl("jobs", "get", "nope")
    assert not_an_id.exit_code == 2 and "not a job id" in not_an_id.stderr
    for r in (absent, broke, bad_input, invalid, missing, not_an_id):
        assert r.stdout == ""
        no_traceback(r)


async def test_a_server_that_is_down_is_named_with_a_hint(atl: Cli) -> None:
    down = f"http://127.0.0.1:{free_port()}"
    result = atl("whoami", "--server", down, ATLILITH_TOKEN="atl_anything")
    assert result.exit_code == client_cli.EXIT_NETWORK == 3
    no_traceback(result)
    assert f"cannot reach the Atlilith server at {down}" in result.stderr and "./run dev" in result.stderr
    err = one_json(atl("credits", "--json", ATLILITH_TOKEN="x", ATLILITH_SERVER=down))["error"]
    assert err["code"] == "server_unreachable" and err["server"] == down and err["exit_code"] == 3
    run = atl("jobs", "run", "identity", "resolve-person", "--server", down, ATLILITH_TOKEN="x")
    assert run.exit_code == 3 and "retry safely with --idempotency-key" in run.stderr
    login = atl("login", "--server", down, "--login", "someone", "--password-stdin", input="pw\n")
    assert login.exit_code == 3 and not atl.config_file.exists()


async def test_without_a_credential_the_cli_says_to_log_in(atl: Cli) -> None:
    result = atl("whoami", "--server", atl.server)
    assert result.exit_code == 4 and f"not signed in to {atl.server}" in result.stderr
    assert "atlilith login" in result.stderr
    bad_url = atl("whoami", "--server", "127.0.0.1:3040")
    assert bad_url.exit_code == 2 and "not a server URL" in bad_url.stderr


async def test_several_servers_a_default_and_logout(
    atl: Cli, http: httpx.AsyncClient, live: LiveServer
) -> None:
    a, b = await signup(http), await signup(http)
    other = f"http://localhost:{live.port}"  # the same server under a second URL
    atl.login(a.slug, a.password)
    assert (
        atl(
            "login", "--server", other, "--login", b.slug, "--password-stdin", input=b.password + "\n"
        ).exit_code
        == 0
    )
    assert one_json(atl("whoami", "--json"))["person"]["slug"] == b.slug  # the latest login is the default
    assert one_json(atl("whoami", "--server", atl.server, "--json"))["person"]["slug"] == a.slug
    assert one_json(atl("whoami", "--json", ATLILITH_SERVER=atl.server))["person"]["slug"] == a.slug
    # ATLILITH_TOKEN overrides the stored credential.
    assert one_json(atl("whoami", "--json", ATLILITH_TOKEN=a.token))["person"]["slug"] == a.slug

    b_token = json.loads(atl.config_file.read_text())["servers"][other]["token"]
    out = one_json(atl("logout", "--json"))
    assert out == {"server": other, "removed": True, "session_ended": True}
    saved = json.loads(atl.config_file.read_text())
    assert saved["default_server"] == atl.server and list(saved["servers"]) == [atl.server]
    assert (await http.get("/v1/me", headers={"Authorization": f"Bearer {b_token}"})).status_code == 401
    assert one_json(atl("whoami", "--json"))["person"]["slug"] == a.slug
    again = atl("logout", "--server", other)
    assert again.exit_code == 0 and "No credential" in again.stdout


async def test_an_expired_session_token_is_renewed_with_the_refresh_token(
    atl: Cli, http: httpx.AsyncClient, settings: Settings
) -> None:
    a = await signup(http)
    atl.login(a.slug, a.password)
    saved = json.loads(atl.config_file.read_text())
    entry = saved["servers"][atl.server]
    claims = jwt.decode(entry["token"], options={"verify_signature": False})
    now = int(dt.datetime.now(dt.UTC).timestamp())
    assert settings.jwt_secret
    entry["token"] = jwt.encode(
        {**claims, "iat": now - 7200, "exp": now - 3600}, settings.jwt_secret, algorithm="HS256"
    )
    atl.config_file.write_text(json.dumps(saved))
    old_refresh = entry["refresh_token"]

    result = atl("whoami", "--json")
    assert result.exit_code == 0, result.output
    assert one_json(result)["person"]["slug"] == a.slug
    renewed = json.loads(atl.config_file.read_text())["servers"][atl.server]
    assert renewed["token"] != entry["token"] and renewed["refresh_token"] != old_refresh
    assert stat.S_IMODE(atl.config_file.stat().st_mode) == 0o600


async def test_the_real_command_prints_exactly_one_json_document(
    http: httpx.AsyncClient, live: LiveServer, tmp_path: os.PathLike[str]
) -> None:
    a = await signup(http)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(ROOT),
        "ATLILITH_CONFIG_DIR": str(tmp_path),
        "ATLILITH_SERVER": live.url,
        "ATLILITH_TOKEN": a.token,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "servers.cli", "whoami", "--json"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["person"]["slug"] == a.slug
    refused = subprocess.run(
        [sys.executable, "-m", "servers.cli", "credits", "--json"],
        cwd=ROOT,
        env={**env, "ATLILITH_TOKEN": "garbage"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert refused.returncode == 4 and "Traceback" not in refused.stderr
    assert json.loads(refused.stdout)["error"]["code"] == "token_invalid"
