"""The app's routing shortcut (`servers.api.deps.KnownPaths`): a path and method served by a
feature router go straight to it the next time, answered as the app router's loop answers
them -- the same route, 405 and 404 as before, and a route added in front of the routers wins
at once."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from starlette.responses import PlainTextResponse
from starlette.routing import BaseRoute, Match, Route
from starlette.types import Scope

from servers.api.deps import KnownPaths
from tests.conftest import signup


def _routes(app: FastAPI) -> list[BaseRoute]:
    return app.router.routes


async def test_a_known_path_is_not_matched_again_against_the_routes_before_its_router(
    app: FastAPI, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = _routes(app)
    assert isinstance(routes[0], KnownPaths)
    first = routes[1]  # the first route the app router's loop would try (an MCP path)
    tried: list[str] = []
    matches = type(first).matches

    def counting(self: BaseRoute, scope: Scope) -> tuple[Match, Scope]:
        if self is first:
            tried.append(scope["path"])
        return matches(self, scope)

    monkeypatch.setattr(type(first), "matches", counting)
    a = await signup(client)
    for _ in range(3):
        me = await client.get("/v1/me", headers=a.h())
        assert me.status_code == 200, me.text
        assert me.json()["person"]["id"] == a.id
    assert tried.count("/v1/me") == 1  # the first request only


async def test_known_paths_answer_as_the_routers_loop_does(app: FastAPI, client: httpx.AsyncClient) -> None:
    a = await signup(client)
    for _ in range(2):  # unknown, then known
        wrong = await client.put("/v1/me", headers=a.h())
        assert wrong.status_code == 405, wrong.text
        assert "GET" in wrong.headers["allow"]
        missing = await client.get("/v1/no-such-thing", headers=a.h())
        assert missing.status_code == 404 and missing.json()["code"] == "not_found", missing.text
        health = await client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "ok"
        patched = await client.patch("/v1/me", json={"display_name": "Known"}, headers=a.h())
        assert patched.status_code == 200 and patched.json()["display_name"] == "Known", patched.text


async def test_a_route_added_in_front_of_the_routers_wins_at_once(
    app: FastAPI, client: httpx.AsyncClient
) -> None:
    a = await signup(client)
    assert (await client.get("/v1/me", headers=a.h())).status_code == 200  # now known

    async def shadow(_: Any) -> PlainTextResponse:
        return PlainTextResponse("shadowed")

    _routes(app).insert(1, Route("/v1/me", shadow, methods=["GET"]))
    answer = await client.get("/v1/me", headers=a.h())
    assert answer.status_code == 200 and answer.text == "shadowed"
