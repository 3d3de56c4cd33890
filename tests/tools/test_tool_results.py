"""A tool's result is checked against its declared model once, by the tool's wrapper: the SDK
publishes the model's schema as `outputSchema` but no longer validates every result's dump against
the model again. What the SDK's check refused is still refused (as an internal error, with no
structured content), and what it accepted is still accepted."""

from __future__ import annotations

import datetime as dt
import json
import uuid
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from pydantic import BaseModel

from core.pagination import Page
from servers.mcp import _tool
from tools.base import Toolset

T = TypeVar("T")


class Slot(BaseModel):
    start: dt.datetime
    providers: list[str]


class Slots(BaseModel):
    slots: list[Slot]


class LooksLikeSlots(BaseModel):
    """Another model with the declared one's fields: the SDK accepted its dump."""

    slots: list[Slot]


class NotSlots(BaseModel):
    slots: str


START = dt.datetime(2031, 5, 6, 9, 30, tzinfo=dt.UTC)
checked = Toolset(name="checked", description="Results checked against their models.")


@checked.tool(read_only=True)
async def checked_slots() -> Slots:
    """Slots."""
    return Slots(slots=[Slot(start=START, providers=["ana"])])


def _generic_page(items: list[T]) -> Page[T]:
    # As `core.pagination.page_of` builds pages: `Page[T]`, not the tool's `Page[Slot]`.
    return Page[T](items=items)


@checked.tool(read_only=True)
async def checked_page() -> Page[Slot]:
    """A page built by a generic helper."""
    return _generic_page([Slot(start=START, providers=["ana"])])


@checked.tool(read_only=True)
async def checked_look_alike() -> Slots:
    """Another model with the same fields."""
    return LooksLikeSlots(slots=[Slot(start=START, providers=["ana"])])  # type: ignore[return-value]


@checked.tool(read_only=True)
async def checked_wrong() -> Slots:
    """A result that fits no slot list."""
    return NotSlots(slots="soon")  # type: ignore[return-value]


class Mixed(BaseModel):
    """What results hold besides slots: client text, numbers, ids, nothing."""

    note: str
    price: float
    big: int
    ids: list[uuid.UUID]
    at: dt.datetime | None
    missing: str | None = None


MIXED = Mixed(
    note='Ça coûte 12 € — "quoted", \\ and \u2028 a line separator',
    price=0.1 + 0.2,
    big=2**63,
    ids=[uuid.UUID(int=7)],
    at=START,
)


@checked.tool(read_only=True)
async def checked_mixed() -> Mixed:
    """Everything a result may hold."""
    return MIXED


def _served(name: str) -> Tool:
    return _tool(next(spec for spec in checked.tools if spec.name == name))


async def _call(name: str) -> Any:
    return await _served(name).run({}, Context(), convert_result=True)


def test_the_sdk_publishes_the_result_schema_without_validating_results_again() -> None:
    tool = _served("checked_slots")
    assert tool.fn_metadata.output_model is None
    assert tool.output_schema is not None and set(tool.output_schema["properties"]) == {"slots"}


async def test_a_result_of_the_declared_model_is_structured_content_and_compact_text() -> None:
    result = await _call("checked_slots")
    expected = {"slots": [{"start": "2031-05-06T09:30:00Z", "providers": ["ana"]}]}
    assert not result.is_error and result.structured_content == expected
    assert result.content[0].text == json.dumps(expected, separators=(",", ":"))


async def test_a_page_built_by_a_generic_helper_or_a_look_alike_model_is_accepted() -> None:
    for name, key in (("checked_page", "items"), ("checked_look_alike", "slots")):
        result = await _call(name)
        assert not result.is_error, result.content
        assert result.structured_content[key][0]["providers"] == ["ana"]


async def test_a_result_that_does_not_fit_the_declared_model_is_an_internal_error() -> None:
    result = await _call("checked_wrong")
    assert result.is_error and result.structured_content is None
    assert json.loads(result.content[0].text)["code"] == "internal_error"


async def test_the_text_is_the_structured_content_as_compact_json() -> None:
    """Written by pydantic, read back for the structured content: the same JSON-mode dump and
    the same compact text (non-ASCII as it is) as dumping to Python and encoding that."""
    result = await _call("checked_mixed")
    expected = MIXED.model_dump(mode="json")
    assert not result.is_error and result.structured_content == expected
    assert result.content[0].text == json.dumps(expected, ensure_ascii=False, separators=(",", ":"))
