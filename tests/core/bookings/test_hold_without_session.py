"""A hold runs on the unit of work's connection alone (`core.uow.UnitOfWork.rows` and `fetch`):
through REST and MCP, with an Idempotency-Key and without, its replay and its refusals, it makes
no ORM session, and answers as before."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from sqlalchemy import event

from core.uow import Database
from tests.conftest import signup
from tests.core.bookings.helpers import at, day_ahead, make_service, set_hours
from tests.support.registry import install
from tests.support.request_path import MCP_POST_HEADERS as MCP_HEADERS
from tests.support.request_path import count_sessions


def _tool(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": name, "arguments": arguments},
    }


async def test_a_hold_makes_no_session(
    own_client: httpx.AsyncClient, own_db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = await signup(own_client)
    await install(own_client, a, "bookings")  # the MCP door asks for it
    await set_hours(own_client, a)
    svc = await make_service(own_client, a)
    day = day_ahead(7)
    made = count_sessions(own_db, monkeypatch)

    plain = await own_client.post(
        "/v1/bookings/holds", json={"service_id": svc["id"], "start_at": at(day, "09:00")}, headers=a.h()
    )
    assert plain.status_code == 201, plain.text
    assert plain.json()["status"] == "held"

    keyed_body = {"service_id": svc["id"], "start_at": at(day, "11:00")}
    keyed_headers = {**a.h(), "Idempotency-Key": "no-session-hold-1"}
    keyed = await own_client.post("/v1/bookings/holds", json=keyed_body, headers=keyed_headers)
    assert keyed.status_code == 201, keyed.text
    retry = await own_client.post("/v1/bookings/holds", json=keyed_body, headers=keyed_headers)
    assert retry.status_code == 201 and retry.json() == keyed.json(), retry.text
    reused = await own_client.post(
        "/v1/bookings/holds", json={**keyed_body, "start_at": at(day, "13:00")}, headers=keyed_headers
    )
    assert reused.status_code == 422 and reused.json()["code"] == "idempotency_key_reused", reused.text
    taken = await own_client.post(
        "/v1/bookings/holds", json={"service_id": svc["id"], "start_at": at(day, "09:30")}, headers=a.h()
    )
    assert taken.status_code == 409 and taken.json()["code"] == "slot_taken", taken.text

    for n, key in enumerate((None, "no-session-mcp-1")):
        args: dict[str, Any] = {"service_id": svc["id"], "start_at": at(day, f"1{5 + n}:00")}
        if key:
            args["idempotency_key"] = key
        r = await own_client.post("/mcp", json=_tool("bookings_hold", args), headers={**MCP_HEADERS, **a.h()})
        assert r.status_code == 200, r.text
        result = r.json()["result"]
        assert result["isError"] is False, r.text
        assert json.loads(result["content"][0]["text"])["status"] == "held"

    assert made[0] == 0
    assert own_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert own_db.system_engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_a_hold_runs_its_statements_on_the_driver(
    own_client: httpx.AsyncClient, own_db: Database
) -> None:
    """The offer and the placing statement go to the driver compiled once
    (`core.db.DriverStatement`), not through SQLAlchemy's execution: every
    statement of a hold, a round-robin one, a keyed one and its replay, and a refused one, is
    heard by the statement listeners, and SQLAlchemy executes none of them."""
    a = await signup(own_client)
    await set_hours(own_client, a)
    svc = await make_service(own_client, a)
    day = day_ahead(8)
    executed: list[object] = []
    heard: list[str] = []

    def on_execute(conn: Any, clause: Any, *args: Any) -> None:
        executed.append(clause)

    def on_cursor(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        heard.append(statement)

    engine = own_db.engine.sync_engine
    event.listen(engine, "before_execute", on_execute)
    event.listen(engine, "before_cursor_execute", on_cursor)
    try:
        body = {"service_id": svc["id"], "start_at": at(day, "09:00")}
        plain = await own_client.post("/v1/bookings/holds", json=body, headers=a.h())
        assert plain.status_code == 201 and plain.json()["status"] == "held", plain.text
        assert len(heard) == 3  # the context, the offer, the placing statement
        keyed_headers = {**a.h(), "Idempotency-Key": "driver-hold-1"}
        keyed_body = {**body, "start_at": at(day, "10:00"), "time_zone": "Asia/Tokyo", "notes": "été"}
        keyed = await own_client.post("/v1/bookings/holds", json=keyed_body, headers=keyed_headers)
        assert keyed.status_code == 201, keyed.text
        assert keyed.json()["client_time_zone"] == "Asia/Tokyo" and keyed.json()["notes"] == "été"
        again = await own_client.post("/v1/bookings/holds", json=keyed_body, headers=keyed_headers)
        assert again.status_code == 201 and again.json() == keyed.json(), again.text
        taken = await own_client.post(
            "/v1/bookings/holds", json={**body, "start_at": at(day, "09:15")}, headers=a.h()
        )
        assert taken.status_code == 409 and taken.json()["code"] == "slot_taken", taken.text
    finally:
        event.remove(engine, "before_execute", on_execute)
        event.remove(engine, "before_cursor_execute", on_cursor)
    assert len(heard) > 3
    assert executed == []
