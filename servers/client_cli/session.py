"""login / logout / whoami: the credential and the context commands act in."""

from __future__ import annotations

import datetime as dt
import socket
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.table import Table

from servers.client_cli.api import Api, connect
from servers.client_cli.config import DEFAULT_SERVER, Credential, load_config, normalize_server, save_config
from servers.client_cli.errors import EXIT_USAGE, CliError
from servers.client_cli.options import JsonOpt, OrgOpt, ServerOpt
from servers.client_cli.output import Output, context_label, escape_markup, handled, when


@handled
def login(
    server: ServerOpt = None,
    api_key: Annotated[
        str | None, typer.Option("--api-key", help="Store this API key (atl_...) instead of signing in.")
    ] = None,
    handle: Annotated[
        str | None, typer.Option("--login", help="Your email or slug; the password is prompted.")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from stdin (first line).")
    ] = False,
    org: OrgOpt = None,
    set_default: Annotated[
        bool, typer.Option("--default/--no-default", help="Make this server the default one.")
    ] = True,
    json_output: JsonOpt = False,
) -> None:
    """Sign in to a server and store the credential (after checking it with GET /v1/me)."""
    out = Output(json_output)
    config = load_config()
    url = normalize_server(server or config.default_server or DEFAULT_SERVER)
    if api_key and handle:
        raise CliError("give either --api-key or --login, not both", EXIT_USAGE)
    if api_key is None and handle is None:
        if password_stdin:
            raise CliError("--password-stdin needs --login HANDLE", EXIT_USAGE)
        handle = typer.prompt("Email or slug", err=True)
    api = Api(server=url, token=None, org=org)
    try:
        if api_key is not None:
            credential = Credential(kind="api_key", token=api_key.strip(), saved_at=dt.datetime.now(dt.UTC))
        else:
            assert handle is not None
            credential = _sign_in(api, handle, _read_password(password_stdin))
        api.token = credential.token
        me = api.get_json("/v1/me")
    finally:
        api.close()
    credential.person = me["person"]["slug"]
    credential.org = org
    config.servers[url] = credential
    if set_default or config.default_server is None:
        config.default_server = url
    path = save_config(config)
    _signed_in(out, url, me, credential, default=config.default_server == url, path=path)


def _sign_in(api: Api, handle: str, password: str) -> Credential:
    """A session credential for `handle` (POST /v1/auth/login)."""
    r = api.request(
        "POST",
        "/v1/auth/login",
        json_body={"login": handle, "password": password, "device_id": _device_id()},
        auth=False,
    )
    body = r.json()
    return Credential(
        kind="session",
        token=body["access_token"],
        refresh_token=body.get("refresh_token"),
        saved_at=dt.datetime.now(dt.UTC),
    )


def _signed_in(
    out: Output, url: str, me: dict[str, Any], credential: Credential, *, default: bool, path: Path
) -> None:
    if out.json:
        out.document(
            {
                "server": url,
                "person": me["person"],
                "context": me["context"],
                "credential": credential.kind,
                "default": default,
                "config": str(path),
            }
        )
        return
    out.say(
        f"Signed in to {url} as [bold]{escape_markup(me['person']['display_name'])}[/] "
        f"({me['person']['slug']}), context {context_label(me)}."
    )
    out.say(f"[dim]Saved to {path}" + (" (default server)" if default else "") + "[/]")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = typer.prompt("Password", hide_input=True, err=True)
    if not password:
        raise CliError("empty password", EXIT_USAGE)
    return password


def _device_id() -> str:
    return f"atlilith-cli@{socket.gethostname()}"[:128]


@handled
def logout(server: ServerOpt = None, json_output: JsonOpt = False) -> None:
    """Forget the credential of a server (a session is also ended on the server)."""
    out = Output(json_output)
    config = load_config()
    url = normalize_server(server or config.default_server or DEFAULT_SERVER)
    stored = config.servers.pop(url, None)
    ended = False
    if stored is not None and stored.kind == "session":
        # Best effort: the credential is forgotten locally whatever the server says.
        api = Api(server=url, token=stored.token, org=None)
        try:
            r = api.request("POST", "/v1/auth/logout", allow=frozenset(range(400, 600)))
            ended = r.status_code == 204
        except CliError:
            ended = False
        finally:
            api.close()
    if config.default_server == url:
        config.default_server = next(iter(config.servers), None)
    if stored is not None:
        save_config(config)
    if out.json:
        out.document({"server": url, "removed": stored is not None, "session_ended": ended})
    elif stored is None:
        out.say(f"No credential stored for {url}.")
    else:
        out.say(f"Signed out of {url}" + (" (session ended)." if ended else "."))


@handled
def whoami(org: OrgOpt = None, server: ServerOpt = None, json_output: JsonOpt = False) -> None:
    """You, the context commands act in, and your orgs and roles."""
    out = Output(json_output)
    with connect(server, org) as api:
        me = api.get_json("/v1/me")
        if out.json:
            out.document({"server": api.server, **me})
            return
    person = me["person"]
    cred = me.get("credential") or {}
    out.say(
        f"[bold]{escape_markup(person['display_name'])}[/] ({person['slug']})"
        + (f" <{person['email']}>" if person.get("email") else "")
    )
    out.say(f"server      {api.server}")
    out.say(f"context     {context_label(me)}")
    out.say(f"credential  {cred.get('kind', '?')} · scopes {' '.join(cred.get('scopes') or []) or '-'}")
    memberships = me.get("memberships") or []
    if not memberships:
        out.say("orgs        none")
        return
    table = Table(title="Orgs")
    for col in ("slug", "name", "role", "joined"):
        table.add_column(col)
    for m in memberships:
        table.add_row(m["org"]["slug"], m["org"]["name"], m["role"], when(m.get("joined_at")))
    out.table(table)
