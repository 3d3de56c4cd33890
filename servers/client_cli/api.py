"""Talking to the server: one credential, one context, failures mapped to CliError."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from core import __version__
from core.doors import DOOR_HEADER
from servers.client_cli.config import (
    DEFAULT_SERVER,
    TOKEN_ENV,
    Credential,
    load_config,
    normalize_server,
    save_config,
)
from servers.client_cli.errors import (
    EXIT_AUTH,
    EXIT_FORBIDDEN,
    EXIT_NETWORK,
    EXIT_NOT_FOUND,
    EXIT_PROBLEM,
    CliError,
)


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
        if problem_body(response).get("code") != "token_expired":
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
        body = problem_body(response)
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


def problem_body(response: httpx.Response) -> dict[str, Any]:
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
