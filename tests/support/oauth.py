"""An OAuth client's side of the flow, step by step over HTTP (what an MCP host does)."""

from __future__ import annotations

import base64
import hashlib
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

REDIRECT = "http://127.0.0.1:33418/callback"
MCP_ACCEPT = {"Accept": "application/json, text/event-stream"}


@dataclass
class Pkce:
    verifier: str
    challenge: str


def pkce() -> Pkce:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    return Pkce(verifier, challenge)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


async def register(
    client: httpx.AsyncClient, *, redirect: str = REDIRECT, name: str = "Test Host", **extra: Any
) -> dict[str, Any]:
    body = {"client_name": name, "redirect_uris": [redirect], "token_endpoint_auth_method": "none", **extra}
    r = await client.post("/register", json=body)
    assert r.status_code == 201, r.text
    return dict(r.json())


async def authorize(client: httpx.AsyncClient, client_id: str, p: Pkce, **params: str) -> httpx.Response:
    q = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": REDIRECT,
        "code_challenge": p.challenge,
        "code_challenge_method": "S256",
        "state": "st-" + secrets.token_hex(4),
        **params,
    }
    return await client.get("/authorize", params={k: v for k, v in q.items() if v != ""})


async def request_id(client: httpx.AsyncClient, client_id: str, p: Pkce, **params: str) -> str:
    r = await authorize(client, client_id, p, **params)
    assert r.status_code == 302, r.text
    location = r.headers["location"]
    assert urlsplit(location).path == "/oauth/consent", location
    return query(location)["request"]


async def approve(
    client: httpx.AsyncClient, headers: dict[str, str], rid: str, org: str | None = None
) -> dict[str, str]:
    r = await client.post(f"/v1/oauth/requests/{rid}/approve", json={"org": org}, headers=headers)
    assert r.status_code == 200, r.text
    return query(r.json()["redirect_to"])


async def exchange(
    client: httpx.AsyncClient, client_id: str, code: str, verifier: str, **extra: str
) -> httpx.Response:
    form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "client_id": client_id,
        "code_verifier": verifier,
        **extra,
    }
    return await client.post("/token", data=form)


async def refresh(client: httpx.AsyncClient, client_id: str, token: str) -> httpx.Response:
    form = {"grant_type": "refresh_token", "refresh_token": token, "client_id": client_id}
    return await client.post("/token", data=form)


async def connect(
    client: httpx.AsyncClient, headers: dict[str, str], org: str | None = None
) -> tuple[str, dict[str, Any]]:
    """The whole flow for a new public client: (client_id, token response)."""
    registered = await register(client)
    p = pkce()
    rid = await request_id(client, registered["client_id"], p)
    code = (await approve(client, headers, rid, org))["code"]
    r = await exchange(client, registered["client_id"], code, p.verifier)
    assert r.status_code == 200, r.text
    return registered["client_id"], dict(r.json())


async def mcp_status(client: httpx.AsyncClient, token: str) -> int:
    """The status /mcp answers a bearer token (401 = refused before any tool runs)."""
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    r = await client.post("/mcp", json=body, headers={"Authorization": f"Bearer {token}", **MCP_ACCEPT})
    return r.status_code
