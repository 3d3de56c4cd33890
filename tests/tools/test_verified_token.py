"""The access token the MCP verifier hands the SDK carries what `core.opener` verified and the
request's open unit of work as plain fields (read several times a call; pydantic's private
attributes cost a Python-level lookup per read), yet serializes and shows as the SDK's own
token: nothing of a unit of work or a context leaks into a dump or a log."""

from __future__ import annotations

from typing import Any, cast

from mcp.server.auth.provider import AccessToken

from core.opener import Verified
from core.uow import UnitOfWork
from tools.base import VerifiedAccessToken

FIELDS: dict[str, Any] = {
    "token": "secret-token",
    "client_id": "session:1",
    "scopes": ["*"],
    "subject": "person-1",
    "resource": "http://localhost:8000/mcp",
}


def test_the_token_dumps_and_shows_as_the_sdks_own() -> None:
    verified, unit = cast(Verified, object()), cast(UnitOfWork, object())
    token = VerifiedAccessToken.of(verified, unit=unit, **FIELDS)
    assert token.model_dump() == AccessToken(**FIELDS).model_dump()
    assert token.model_dump_json() == AccessToken(**FIELDS).model_dump_json()
    assert "object at" not in repr(token)
    assert token.verified is verified


def test_its_unit_of_work_goes_to_whoever_asks_first() -> None:
    unit = cast(UnitOfWork, object())
    token = VerifiedAccessToken.of(cast(Verified, object()), unit=unit, **FIELDS)
    assert token.holds_unit
    assert token.take_unit() is unit
    assert not token.holds_unit and token.take_unit() is None
    assert VerifiedAccessToken.of(cast(Verified, object()), **FIELDS).take_unit() is None
