"""Test support for the registry: install components for a person or an org, as a client would."""

from __future__ import annotations

from typing import Any

import httpx

from tests.conftest import Account

BUILTINS = ("analytics", "bookings", "credits", "identity", "jobs", "messaging")


async def install(
    client: httpx.AsyncClient,
    who: Account,
    *components: str,
    org: str | None = None,
    config: dict[str, Any] | None = None,
) -> None:
    """Install `components` (default: every installable built-in) in the person's personal
    context, or in `org` (they must be its owner or admin)."""
    for slug in components or BUILTINS:
        body: dict[str, Any] = {"component": slug}
        if config is not None:
            body["config"] = config
        r = await client.post("/v1/installations", json=body, headers=who.h(org=org))
        assert r.status_code in (200, 201), r.text


async def uninstall(client: httpx.AsyncClient, who: Account, component: str, org: str | None = None) -> None:
    r = await client.delete(f"/v1/installations/{component}", headers=who.h(org=org))
    assert r.status_code == 204, r.text
