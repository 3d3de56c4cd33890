"""Client commands of `atlilith`: login, logout, whoami, add, search, jobs, credits.

They talk HTTP to a running Atlilith server (never to the database), so they work the same
against `./run dev` on 127.0.0.1 and against a deployment. Registered on the main CLI by
`servers.cli`. The credential store is a JSON file in the user's config dir (0600 in a 0700
dir, replaced atomically); see docs/cli.md.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import functools
import hashlib
import json
import os
import re
import socket
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import httpx
import typer
import yaml
from pydantic import BaseModel, Field, ValidationError
from rich.console import Console
from rich.table import Table

from core import __version__
from core.doors import DOOR_HEADER

# Distinct exit codes so scripts can tell a dead server from a refused request.
EXIT_FAILED = 1  # the operation ran and failed: a job failed, a local file was not overwritten
EXIT_USAGE = 2  # bad arguments (click's own code for usage errors)
EXIT_NETWORK = 3  # the server could not be reached
EXIT_AUTH = 4  # not signed in, or the credential was refused (401)
EXIT_FORBIDDEN = 5  # signed in but not allowed (403: scope, role, not a member)
EXIT_NOT_FOUND = 6  # 404
EXIT_PROBLEM = 7  # any other refusal by the server (validation, conflict, credits, 5xx)
EXIT_TIMEOUT = 8  # `jobs run --wait` gave up before the job finished

DEFAULT_SERVER = "http://127.0.0.1:3040"
FINAL_JOB_STATES = frozenset({"succeeded", "failed", "cancelled"})
CONFIG_ENV = "ATLILITH_CONFIG_DIR"
SERVER_ENV = "ATLILITH_SERVER"
TOKEN_ENV = "ATLILITH_TOKEN"  # noqa: S105  (the variable's name, not a secret)
# Agent Skills spec: the folder name; checked before it becomes a path (the server is not trusted
# to choose where we write).
SKILL_NAME = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
SKILLS_MANIFEST = ".atlilith.json"

P = ParamSpec("P")
R = TypeVar("R")


# --- errors ---------------------------------------------------------------------------------------


class CliError(Exception):
    """Everything a command can fail with: rendered as a message (or a JSON error document with
    --json) and an exit code, never as a traceback."""

    def __init__(
        self,
        message: str,
        exit_code: int,
        *,
        code: str | None = None,
        hint: str | None = None,
        status: int | None = None,
        details: list[str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.code = code
        self.hint = hint
        self.status = status
        self.details = details or []
        self.extra = extra or {}

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message, "exit_code": self.exit_code}
        for key in ("code", "hint", "status"):
            if getattr(self, key) is not None:
                body[key] = getattr(self, key)
        if self.details:
            body["details"] = self.details
        body.update(self.extra)
        return body


# --- the config file ------------------------------------------------------------------------------


class Credential(BaseModel):
    kind: Literal["api_key", "session"]
    token: str
    refresh_token: str | None = None
    person: str | None = None
    org: str | None = Field(default=None, description="The context commands use when --org is omitted.")
    saved_at: dt.datetime


class ConfigFile(BaseModel):
    default_server: str | None = None
    servers: dict[str, Credential] = Field(default_factory=dict)


def config_dir() -> Path:
    override = os.environ.get(CONFIG_ENV)
    return Path(override) if override else Path(typer.get_app_dir("atlilith"))


def config_path() -> Path:
    return config_dir() / "config.json"


def load_config() -> ConfigFile:
    path = config_path()
    try:
        raw = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return ConfigFile()
    except OSError as exc:
        raise CliError(f"cannot read {path}: {exc.strerror}", EXIT_FAILED) from exc
    try:
        return ConfigFile.model_validate_json(raw)
    except ValidationError as exc:
        raise CliError(
            f"the config file {path} is not valid",
            EXIT_FAILED,
            hint="fix or delete it, then `atlilith login` again",
        ) from exc


def save_config(config: ConfigFile) -> Path:
    """Write the file 0600 inside a 0700 dir, atomically: a crash never leaves half a file, and
    the secret is never readable by others, not even for a moment."""
    directory = config_dir()
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    directory.chmod(0o700)
    path = directory / "config.json"
    fd, tmp = tempfile.mkstemp(prefix=".config-", suffix=".tmp", dir=directory)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(config.model_dump_json(indent=2) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise
    return path


def normalize_server(url: str) -> str:
    text = url.strip().rstrip("/")
    if "://" not in text:
        raise CliError(
            f"{url!r} is not a server URL",
            EXIT_USAGE,
            hint=f"give the scheme, e.g. --server {DEFAULT_SERVER}",
        )
    try:
        parsed = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise CliError(f"{url!r} is not a server URL", EXIT_USAGE) from exc
    if parsed.scheme not in {"http", "https"} or not parsed.host:
        raise CliError(f"{url!r} is not an http(s) URL", EXIT_USAGE, hint=f"e.g. --server {DEFAULT_SERVER}")
    return text


# --- output ---------------------------------------------------------------------------------------


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
        self.err.print(f"[bold red]error:[/] {_escape(err.message)}")
        for line in err.details:
            self.err.print(f"  - {_escape(line)}")
        if err.hint:
            self.err.print(f"[yellow]hint:[/] {_escape(err.hint)}")


def _escape(text: str) -> str:
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


# --- talking to the server ------------------------------------------------------------------------


@dataclass
class Api:
    """One server, one credential, one context. Sends X-Atlilith-Org, renews an expired session
    token once with its refresh token (and saves the new pair), maps failures to CliError."""

    server: str
    token: str | None
    org: str | None
    stored: Credential | None = None  # set when the token came from the config file (renewable)
    timeout: float = 30.0
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = httpx.Client(
            base_url=self.server,
            timeout=self.timeout,
            # Hints in errors then name `atlilith` commands rather than REST routes.
            headers={"User-Agent": f"atlilith-cli/{__version__}", DOOR_HEADER: "cli"},
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
        allow: frozenset[int] = frozenset(),
    ) -> httpx.Response:
        """Send; a status >= 400 raises CliError unless it is in `allow`."""
        if auth and not self.token:
            raise CliError(
                f"not signed in to {self.server}",
                EXIT_AUTH,
                hint=f"run `atlilith login --server {self.server}`, or set {TOKEN_ENV}",
            )
        response = self._send(method, path, json_body, params, headers, auth)
        if response.status_code == 401 and auth and self._renew(response):
            response = self._send(method, path, json_body, params, headers, auth)
        if response.status_code >= 400 and response.status_code not in allow:
            raise self.problem(response)
        return response

    def get_json(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return self.request("GET", path, params=params).json()

    def _send(
        self,
        method: str,
        path: str,
        json_body: Any,
        params: dict[str, Any] | None,
        headers: dict[str, str] | None,
        auth: bool,
    ) -> httpx.Response:
        sent: dict[str, str] = dict(headers or {})
        if auth and self.token:
            sent["Authorization"] = f"Bearer {self.token}"
        if self.org:
            sent["X-Atlilith-Org"] = self.org
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            return self.http.request(method, path, json=json_body, params=clean, headers=sent)
        except httpx.ConnectError as exc:
            raise self._unreachable("connection refused or host unknown") from exc
        except httpx.TimeoutException as exc:
            raise self._unreachable(f"no answer within {self.timeout:g} s") from exc
        except httpx.TransportError as exc:
            raise self._unreachable(type(exc).__name__) from exc

    def _unreachable(self, why: str) -> CliError:
        return CliError(
            f"cannot reach the Atlilith server at {self.server} ({why})",
            EXIT_NETWORK,
            code="server_unreachable",
            hint="is it running? Start one locally with `./run dev`, or point at another "
            "with --server URL / ATLILITH_SERVER",
            extra={"server": self.server},
        )

    def _renew(self, response: httpx.Response) -> bool:
        stored = self.stored
        if stored is None or stored.kind != "session" or not stored.refresh_token:
            return False
        if _problem_body(response).get("code") != "token_expired":
            return False
        r = self._send("POST", "/v1/auth/refresh", {"refresh_token": stored.refresh_token}, None, None, False)
        if r.status_code != 200:
            return False
        body = r.json()
        config = load_config()
        renewed = stored.model_copy(
            update={
                "token": body["access_token"],
                "refresh_token": body.get("refresh_token") or stored.refresh_token,
                "saved_at": dt.datetime.now(dt.UTC),
            }
        )
        config.servers[self.server] = renewed
        save_config(config)
        self.stored, self.token = renewed, renewed.token
        return True

    def problem(self, response: httpx.Response) -> CliError:
        status = response.status_code
        body = _problem_body(response)
        code = body.get("code")
        detail = str(body.get("detail") or body.get("title") or response.reason_phrase or "request failed")
        hint = body.get("hint")
        issues = [e for e in body.get("errors") or [] if isinstance(e, dict)]
        details = [f"{e.get('field', '?')}: {e.get('message', '')}" for e in issues]
        extra = {"server": self.server}
        if body.get("trace_id"):
            extra["trace_id"] = str(body["trace_id"])
        label = f" ({code})" if code else ""
        if status == 401:
            return CliError(
                f"{self.server} refused the credential: {detail}{label}",
                EXIT_AUTH,
                code=code or "unauthenticated",
                status=status,
                hint=f"sign in again with `atlilith login --server {self.server}`"
                + (f" ({hint})" if hint else ""),
                extra=extra,
            )
        exit_code = {403: EXIT_FORBIDDEN, 404: EXIT_NOT_FOUND}.get(status, EXIT_PROBLEM)
        prefix = "not allowed: " if status == 403 else ""
        if not body:
            detail = f"the server answered {status} {response.reason_phrase}".rstrip()
        return CliError(
            f"{prefix}{detail}{label}",
            exit_code,
            code=code,
            status=status,
            hint=hint,
            details=details,
            extra=extra,
        )


def _problem_body(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


@contextlib.contextmanager
def connect(server: str | None, org: str | None) -> Iterator[Api]:
    """The server (--server / ATLILITH_SERVER, else the config's default, else localhost), its
    credential (ATLILITH_TOKEN, else the config's) and the context (--org, else the one saved at
    login, else the credential's own)."""
    config = load_config()
    url = normalize_server(server or config.default_server or DEFAULT_SERVER)
    stored = config.servers.get(url)
    env_token = os.environ.get(TOKEN_ENV) or None
    api = Api(
        server=url,
        token=env_token or (stored.token if stored else None),
        org=org or (stored.org if stored else None),
        stored=None if env_token else stored,
    )
    try:
        yield api
    finally:
        api.close()


# --- common options -------------------------------------------------------------------------------

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


def _parse_object(text: str, what: str) -> dict[str, Any]:
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


def _context_label(me: dict[str, Any]) -> str:
    ctx = me.get("context") or {}
    if ctx.get("kind") == "org" and ctx.get("org"):
        return f"org {ctx['org']['slug']} ({ctx.get('role') or 'member'})"
    return "personal"


def _when(value: Any) -> str:
    if not value:
        return ""
    try:
        return dt.datetime.fromisoformat(str(value)).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return str(value)


def _page_hint(out: Output, page: dict[str, Any]) -> None:
    if page.get("next_cursor"):
        out.say(f"[dim]more: --cursor {page['next_cursor']}[/]")


# --- login / logout / whoami ----------------------------------------------------------------------


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
            password = _read_password(password_stdin)
            r = api.request(
                "POST",
                "/v1/auth/login",
                json_body={"login": handle, "password": password, "device_id": _device_id()},
                auth=False,
            )
            body = r.json()
            credential = Credential(
                kind="session",
                token=body["access_token"],
                refresh_token=body.get("refresh_token"),
                saved_at=dt.datetime.now(dt.UTC),
            )
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
    if out.json:
        out.document(
            {
                "server": url,
                "person": me["person"],
                "context": me["context"],
                "credential": credential.kind,
                "default": config.default_server == url,
                "config": str(path),
            }
        )
        return
    out.say(
        f"Signed in to {url} as [bold]{_escape(me['person']['display_name'])}[/] "
        f"({me['person']['slug']}), context {_context_label(me)}."
    )
    out.say(f"[dim]Saved to {path}" + (" (default server)" if config.default_server == url else "") + "[/]")


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
        f"[bold]{_escape(person['display_name'])}[/] ({person['slug']})"
        + (f" <{person['email']}>" if person.get("email") else "")
    )
    out.say(f"server      {api.server}")
    out.say(f"context     {_context_label(me)}")
    out.say(f"credential  {cred.get('kind', '?')} · scopes {' '.join(cred.get('scopes') or []) or '-'}")
    memberships = me.get("memberships") or []
    if not memberships:
        out.say("orgs        none")
        return
    table = Table(title="Orgs")
    for col in ("slug", "name", "role", "joined"):
        table.add_column(col)
    for m in memberships:
        table.add_row(m["org"]["slug"], m["org"]["name"], m["role"], _when(m.get("joined_at")))
    out.table(table)


# --- registry: add / search -----------------------------------------------------------------------


@handled
def add(
    slug: Annotated[str, typer.Argument(help="The component to install, e.g. `bookings`.")],
    directory: Annotated[
        Path, typer.Option("--dir", help="Where agent skills live; the skill goes to DIR/<name>/SKILL.md.")
    ] = Path(".claude/skills"),
    config_json: Annotated[
        str | None, typer.Option("--config", help="Installation config: a JSON object, @file or -.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Overwrite a locally modified SKILL.md.")] = False,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Install a component for the current context and write its skill for your agent."""
    out = Output(json_output)
    component_config = _parse_object(config_json, "--config") if config_json is not None else None
    body: dict[str, Any] = {"component": slug}
    if component_config is not None:
        body["config"] = component_config
    with connect(server, org) as api:
        r = api.request("POST", "/v1/installations", json_body=body)
        created = r.status_code == 201
        installation = r.json()
        config_updated = False
        if not created and component_config is not None and installation.get("config") != component_config:
            # Already installed: the POST leaves config alone, so --config means "set it".
            installation = api.request(
                "PATCH", f"/v1/installations/{slug}", json_body={"config": component_config}
            ).json()
            config_updated = True
        skill_response = api.request("GET", f"/v1/registry/{slug}/skill", allow=frozenset({404}))
        if skill_response.status_code == 404:
            problem = _problem_body(skill_response)
            if problem.get("code") != "skill_not_found":
                raise api.problem(skill_response)
            skill_text = None
        else:
            skill_text = skill_response.text
    written = None
    if skill_text is not None:
        written = write_skill(directory, slug, installation, skill_text, force)
    if out.json:
        out.document(
            {
                "installation": installation,
                "created": created,
                "config_updated": config_updated,
                "skill": written,
            }
        )
    else:
        where = _where(api.org)  # --org, or the context saved at login
        verb = "Installed" if created else "Already installed:"
        out.say(f"{verb} [bold]{slug}[/] {installation.get('version', '')} for the {where}.")
        if config_updated:
            out.say("Config updated.")
        if written is None:
            out.say("This component has no skill; nothing written.")
        else:
            out.say(_skill_message(written))
    if written is not None and written["action"] == "kept":
        raise typer.Exit(EXIT_FAILED)


def _where(org: str | None) -> str:
    if not org:
        return "current context"
    return "personal context" if org == "personal" else f"org {org}"


def _skill_message(written: dict[str, Any]) -> str:
    path = written["path"]
    return {
        "created": f"Wrote its skill to {path}.",
        "updated": f"Updated its skill at {path}.",
        "overwritten": f"Overwrote your local changes to {path} (--force).",
        "unchanged": f"Its skill at {path} is already up to date.",
        "kept": f"[yellow]Not overwritten:[/] {path} was modified locally; use --force to replace it.",
    }[str(written["action"])]


def _skill_name(text: str, fallback: str) -> str:
    name: Any = None
    if text.startswith("---"):
        parts = text.split("---", 2)
        if len(parts) == 3:
            with contextlib.suppress(yaml.YAMLError):
                front = yaml.safe_load(parts[1])
                if isinstance(front, dict):
                    name = front.get("name")
    chosen: str = name if isinstance(name, str) else fallback
    if not SKILL_NAME.match(chosen) or len(chosen) > 64:
        raise CliError(
            f"the server sent a skill named {chosen!r}, which is not a valid skill folder name",
            EXIT_PROBLEM,
            code="skill_name_invalid",
        )
    return chosen


def write_skill(
    directory: Path, slug: str, installation: dict[str, Any], text: str, force: bool
) -> dict[str, Any]:
    """Write DIR/<name>/SKILL.md. DIR/.atlilith.json remembers the hash of what we wrote, so an
    update replaces our own old copy but never a file the user edited (unless --force)."""
    name = _skill_name(text, slug)
    target = directory / name / "SKILL.md"
    manifest_path = directory / SKILLS_MANIFEST
    manifest: dict[str, Any] = {"skills": {}}
    with contextlib.suppress(FileNotFoundError, ValueError):
        loaded = json.loads(manifest_path.read_text(encoding="utf-8"))
        if isinstance(loaded, dict) and isinstance(loaded.get("skills"), dict):
            manifest = loaded
    new_hash = hashlib.sha256(text.encode()).hexdigest()
    recorded = (manifest["skills"].get(name) or {}).get("sha256")
    action = "created"
    if target.exists():
        current_hash = hashlib.sha256(target.read_bytes()).hexdigest()
        if current_hash == new_hash:
            action = "unchanged"
        elif current_hash == recorded:
            action = "updated"
        elif force:
            action = "overwritten"
        else:
            action = "kept"
    result = {"name": name, "path": str(target), "action": action, "sha256": new_hash}
    if action == "kept":
        return result
    if action != "unchanged":
        target.parent.mkdir(parents=True, exist_ok=True)
        _atomic_write(target, text)
    manifest["skills"][name] = {
        "component": slug,
        "version": installation.get("version"),
        "sha256": new_hash,
    }
    _atomic_write(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return result


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        Path(tmp).chmod(0o644)
        Path(tmp).replace(path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            Path(tmp).unlink()
        raise


@handled
def search(
    query: Annotated[str | None, typer.Argument(help="Words to look for; omit to list everything.")] = None,
    kind: Annotated[str | None, typer.Option("--kind", help="`builtin` or `peer`.")] = None,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Search the registry: components, what they offer, and whether your context has them."""
    out = Output(json_output)
    with connect(server, org) as api:
        page = api.get_json("/v1/registry", {"q": query, "kind": kind, "limit": limit, "cursor": cursor})
    if out.json:
        out.document(page)
        return
    items = page.get("items") or []
    if not items:
        out.say("No component matches." if query else "The registry is empty.")
        return
    table = Table()
    for col in ("slug", "name", "kind", "version", "installed", "summary"):
        table.add_column(col, overflow="fold" if col == "summary" else "ellipsis")
    for c in items:
        summary = (c.get("description") or "").strip().splitlines()
        table.add_row(
            c["slug"],
            c.get("name") or "",
            c.get("kind") or "",
            c.get("version") or "",
            "yes" if c.get("installed") else "no",
            _short(summary[0] if summary else "", 80),
        )
    out.table(table)
    _page_hint(out, page)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


# --- jobs -----------------------------------------------------------------------------------------

jobs_app = typer.Typer(help="Run component actions as jobs and follow them.", no_args_is_help=True)


@jobs_app.command("list")
@handled
def jobs_list(
    status: Annotated[
        str | None, typer.Option("--status", help="queued, running, succeeded, failed or cancelled.")
    ] = None,
    component: Annotated[str | None, typer.Option("--component")] = None,
    action: Annotated[str | None, typer.Option("--action")] = None,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Jobs of the current context, newest first."""
    out = Output(json_output)
    params = {"status": status, "component": component, "action": action, "limit": limit, "cursor": cursor}
    with connect(server, org) as api:
        page = api.get_json("/v1/jobs", params)
    if out.json:
        out.document(page)
        return
    items = page.get("items") or []
    if not items:
        out.say("No jobs.")
        return
    table = Table()
    for col in ("id", "action", "status", "held", "charged", "created"):
        table.add_column(col, no_wrap=col != "action")
    for j in items:
        table.add_row(
            j["id"],
            f"{j['component']} {j['action']}",
            _status_text(j["status"]),
            str(j["credits_held"]),
            str(j["credits_captured"]),
            _when(j.get("created_at")),
        )
    out.table(table)
    _page_hint(out, page)


def _status_text(status: str) -> str:
    color = {"succeeded": "green", "failed": "red", "cancelled": "yellow"}.get(status)
    return f"[{color}]{status}[/]" if color else status


@jobs_app.command("get")
@handled
def jobs_get(
    job_id: Annotated[str, typer.Argument(help="The job id.")],
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """One job: status, input, output or error, credits."""
    out = Output(json_output)
    job_uuid = _job_uuid(job_id)
    with connect(server, org) as api:
        job = api.get_json(f"/v1/jobs/{job_uuid}")
    if out.json:
        out.document(job)
        return
    _show_job(out, job)


def _job_uuid(text: str) -> uuid.UUID:
    try:
        return uuid.UUID(text)
    except ValueError as exc:
        raise CliError(
            f"{text!r} is not a job id", EXIT_USAGE, hint="job ids are UUIDs; see `atlilith jobs list`"
        ) from exc


def _show_job(out: Output, job: dict[str, Any]) -> None:
    out.say(f"job      {job['id']}")
    out.say(f"action   {job['component']} {job['action']} ({job.get('executor', '')})")
    out.say(f"status   {_status_text(job['status'])}")
    out.say(
        f"credits  quoted {job['credits_quoted']} · held {job['credits_held']} · "
        f"charged {job['credits_captured']} · hold {job.get('hold_status', '')}"
    )
    out.say(
        f"created  {_when(job.get('created_at'))}"
        + (f" · finished {_when(job['finished_at'])}" if job.get("finished_at") else "")
    )
    if job.get("error"):
        out.say(f"[red]error[/]    {_escape(job['error']['code'])}: {_escape(job['error']['message'])}")
    if job.get("output") is not None:
        out.say("output")
        out.out.print_json(json.dumps(job["output"], default=str))


@jobs_app.command("run")
@handled
def jobs_run(
    component: Annotated[str, typer.Argument(help="e.g. `identity`.")],
    action: Annotated[str, typer.Argument(help="e.g. `resolve-person`; see GET /v1/actions.")],
    input_json: Annotated[
        str, typer.Option("--input", help="The action's input: a JSON object, @file or - (stdin).")
    ] = "{}",
    wait: Annotated[bool, typer.Option("--wait", help="Follow the job until it finishes.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", min=1, help="With --wait: give up after this many seconds.")
    ] = 300.0,
    idempotency_key: Annotated[
        str | None,
        typer.Option("--idempotency-key", help="Reuse a key to retry safely; one is generated otherwise."),
    ] = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Run an action as a job (its price is held now); --wait follows it to the end."""
    out = Output(json_output)
    data = _parse_object(input_json, "--input")
    key = idempotency_key or str(uuid.uuid4())
    with connect(server, org) as api:
        try:
            accepted = api.request(
                "POST",
                f"/v1/run/{component}/{action}",
                json_body={"input": data},
                headers={"Idempotency-Key": key},
            ).json()
        except CliError as err:
            err.extra["idempotency_key"] = key
            if err.exit_code == EXIT_NETWORK or (err.status or 0) >= 500:
                # The job may have been accepted before the failure: the same key cannot run it twice.
                err.hint = f"{err.hint + '; ' if err.hint else ''}retry safely with --idempotency-key {key}"
            raise
        if not out.json:
            held = accepted["credits_held"]
            out.say(f"Job {accepted['job_id']} {accepted['status']}, {held} credits held.")
            out.say(f"[dim]Idempotency-Key: {key}  (retry with --idempotency-key {key})[/]")
        job = _wait_for(api, out, accepted["job_id"], timeout, key) if wait else None
    if out.json:
        out.document({"idempotency_key": key, "accepted": accepted, **({"job": job} if job else {})})
    elif job is not None:
        _show_job(out, job)
    if job is not None and job["status"] != "succeeded":
        raise typer.Exit(EXIT_FAILED)


def _wait_for(api: Api, out: Output, job_id: str, timeout: float, key: str) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    delay = 0.2
    # The spinner goes to stderr, and only for humans: stdout stays one document with --json.
    spinner = out.err.status(f"job {job_id}: queued") if not out.json else contextlib.nullcontext()
    with spinner as status:
        while True:
            job: dict[str, Any] = api.get_json(f"/v1/jobs/{job_id}")
            if job["status"] in FINAL_JOB_STATES:
                return job
            if status is not None:
                status.update(f"job {job_id}: {job['status']}")
            if time.monotonic() >= deadline:
                raise CliError(
                    f"job {job_id} is still {job['status']} after {timeout:g} s",
                    EXIT_TIMEOUT,
                    code="wait_timeout",
                    hint=f"it keeps running on the server; follow it with `atlilith jobs get {job_id}`",
                    extra={"job": job, "idempotency_key": key},
                )
            time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
            delay = min(delay * 1.5, 2.0)


# --- credits --------------------------------------------------------------------------------------


@handled
def credits(
    ledger: Annotated[bool, typer.Option("--ledger", help="Also list the latest ledger entries.")] = False,
    limit: LimitOpt = 20,
    cursor: CursorOpt = None,
    org: OrgOpt = None,
    server: ServerOpt = None,
    json_output: JsonOpt = False,
) -> None:
    """Credits of the current context: balance, available, open holds (and the ledger)."""
    out = Output(json_output)
    with connect(server, org) as api:
        balance = api.get_json("/v1/credits")
        entries = api.get_json("/v1/credits/ledger", {"limit": limit, "cursor": cursor}) if ledger else None
    if out.json:
        out.document({**balance, **({"ledger": entries} if entries is not None else {})})
        return
    where = "personal" if balance.get("context") == "personal" else f"org {api.org or balance.get('org_id')}"
    out.say(f"[bold]{balance['available']}[/] credits available ({where})")
    holds_count = balance["open_holds_count"]
    out.say(f"balance {balance['balance']} · held {balance['held']} · open holds {holds_count}")
    if balance.get("open_holds"):
        holds = Table(title="Open holds")
        for col in ("job", "action", "credits", "expires"):
            holds.add_column(col, no_wrap=True)
        for h in balance["open_holds"]:
            what = f"{h['component']} {h['action']}"
            holds.add_row(h["job_id"], what, str(h["credits"]), _when(h["expires_at"]))
        out.table(holds)
    if entries is not None:
        table = Table(title="Ledger")
        for col in ("when", "kind", "amount", "balance", "held", "job", "memo"):
            table.add_column(col, no_wrap=col not in {"memo"})
        for e in entries.get("items") or []:
            table.add_row(
                _when(e["created_at"]),
                e["kind"],
                str(e["amount"]),
                str(e["balance_after"]),
                str(e["held_after"]),
                e.get("job_id") or "",
                e.get("memo") or "",
            )
        out.table(table)
        _page_hint(out, entries)


def register(app: typer.Typer) -> None:
    app.command(name="login")(login)
    app.command(name="logout")(logout)
    app.command(name="whoami")(whoami)
    app.command(name="add")(add)
    app.command(name="search")(search)
    app.add_typer(jobs_app, name="jobs")
    app.command(name="credits")(credits)
