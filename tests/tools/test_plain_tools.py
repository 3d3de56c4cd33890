"""Tools are module-level functions: the adapter turns a flat model into plain arguments with the
model's bounds and descriptions, and builds the model back from what the client sent."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

import pytest
from mcp.server.mcpserver.tools import Tool
from pydantic import Field

from core.validation import Input
from tools import identity
from tools.base import Flat, ToolRuntime, Toolset, sent_arguments, served_function


class PriceChange(Input):
    name: str | None = Field(default=None, max_length=20, description="A name.")
    price: int | None = Field(default=None, ge=0, le=1000, description="Cents; null clears it.")


seen: list[PriceChange] = []


async def change(rt: ToolRuntime, fields: Flat[PriceChange], note: str | None = None) -> dict[str, Any]:
    seen.append(fields)
    return {"set": sorted(fields.model_fields_set), "note": note, "rt": rt}


@dataclass
class FakeServer:
    runtime: Any


@dataclass
class FakeContext:
    mcp_server: FakeServer


def test_flat_model_becomes_plain_arguments_with_the_models_bounds() -> None:
    schema = Tool.from_function(served_function(change), name="change").parameters
    props = schema["properties"]
    assert set(props) == {"name", "price", "note"}
    assert "mcp_context" not in props
    price = next(s for s in props["price"]["anyOf"] if s.get("type") == "integer")
    assert (price["minimum"], price["maximum"]) == (0, 1000)
    assert props["price"]["description"] == "Cents; null clears it."
    assert "maxLength" in next(s for s in props["name"]["anyOf"] if s.get("type") == "string")


async def test_the_model_is_built_from_what_was_sent_so_null_clears() -> None:
    served = served_function(change)
    context = FakeContext(FakeServer(runtime="the-runtime"))
    # The SDK passes every argument, defaults included; only `price` was sent, as null.
    token = sent_arguments.set(frozenset({"price"}))
    try:
        out = await served(name=None, price=None, note=None, mcp_context=context)
    finally:
        sent_arguments.reset(token)
    assert out == {"set": ["price"], "note": None, "rt": "the-runtime"}
    assert seen[-1].price is None and "name" not in seen[-1].model_fields_set


async def test_a_sent_value_out_of_the_models_bounds_is_refused_by_the_model() -> None:
    served = served_function(change)
    with pytest.raises(ValueError):
        await served(price=5000, mcp_context=FakeContext(FakeServer(runtime=None)))


def test_tools_are_module_level_functions_in_a_module_level_toolset() -> None:
    assert isinstance(identity.identity, Toolset)
    assert inspect.iscoroutinefunction(identity.identity_resolve_person)
    first = next(iter(inspect.signature(identity.identity_resolve_person, eval_str=True).parameters))
    assert first == "rt"
    assert {t.name for t in identity.identity.tools} == {
        "identity_resolve_person",
        "identity_resolve_company",
    }


def test_bookings_tools_are_module_level_functions_in_its_toolset() -> None:
    from tools import bookings

    assert isinstance(bookings.bookings, Toolset)
    assert not hasattr(bookings, "toolset")
    for spec in bookings.bookings.tools:
        fn = getattr(bookings, spec.name)
        assert inspect.iscoroutinefunction(fn), spec.name
        assert next(iter(inspect.signature(fn, eval_str=True).parameters)) == "rt", spec.name


# Appended by the module conversions (issue 18, step 3); imports here keep merges to an append.
import importlib  # noqa: E402

import httpx  # noqa: E402
from mcp import Client  # noqa: E402

from core.uow import Database  # noqa: E402
from servers.mcp import build_server  # noqa: E402
from tests.conftest import signup  # noqa: E402
from tools import tenancy  # noqa: E402


@pytest.mark.parametrize(
    ("module", "expected"),
    [
        ("credits", {"credits_balance", "credits_ledger"}),
        ("jobs", {"jobs_actions_list", "jobs_quote", "jobs_run", "jobs_get", "jobs_list", "jobs_cancel"}),
        ("registry", {"registry_search", "registry_get", "registry_install", "registry_configure"}),
        ("tenancy", {"whoami", "orgs_list", "orgs_create", "clients_update"}),
        ("admin", {"admin_persons", "admin_person_suspend", "admin_dead_letters_redrive"}),
    ],
)
def test_each_converted_module_has_a_toolset_of_module_level_functions(
    module: str, expected: set[str]
) -> None:
    mod = importlib.import_module(f"tools.{module}")
    toolset = getattr(mod, module)
    assert isinstance(toolset, Toolset) and not hasattr(mod, "toolset")
    assert expected <= {t.name for t in toolset.tools}
    for spec in toolset.tools:
        fn = getattr(mod, spec.name)
        assert inspect.iscoroutinefunction(fn), spec.name
        assert next(iter(inspect.signature(fn, eval_str=True).parameters)) == "rt", spec.name


async def test_a_converted_tool_is_called_directly_with_a_runtime(
    client: httpx.AsyncClient, db: Database
) -> None:
    a = await signup(client)
    me = await tenancy.whoami(ToolRuntime(db, static_token=a.token))
    assert me.person.slug == a.slug and me.context.kind == "personal"


async def test_clients_update_clears_a_field_sent_as_null(client: httpx.AsyncClient, db: Database) -> None:
    a = await signup(client)
    async with Client(build_server(db, static_token=a.token, toolset_names=["tenancy"])) as c:
        made = await c.call_tool(
            "clients_create", {"name": "Ada", "phone": "+33612345678", "notes": "Mornings"}
        )
        client_id = made.structured_content["id"]
        out = await c.call_tool("clients_update", {"client_id": client_id, "notes": None})
    assert not out.is_error, out.content
    assert out.structured_content["notes"] is None
    assert out.structured_content["phone"] == "+33612345678"  # not sent: unchanged


def test_messaging_tools_are_module_level_and_take_the_models_bounds() -> None:
    from core.doors import operations_called
    from tools import messaging

    assert isinstance(messaging.messaging, Toolset)
    for spec in messaging.messaging.tools:
        fn = getattr(messaging, spec.name)
        assert inspect.iscoroutinefunction(fn), spec.name
        assert next(iter(inspect.signature(fn, eval_str=True).parameters)) == "rt", spec.name
    # Hints name the tool that calls an operation: found through the served wrapper too.
    create = next(t for t in messaging.messaging.tools if t.name == "messaging_draft_create")
    assert operations_called(create.fn) == {"messaging.create_draft"}
    # The flat copy of `body` had lost the model's lower bound: an empty edit was sent on.
    approve = Tool.from_function(served_function(messaging.messaging_draft_approve), name="a").parameters
    body = next(s for s in approve["properties"]["body"]["anyOf"] if s.get("type") == "string")
    assert body["minLength"] == 1


def test_analytics_tools_are_module_level_and_take_their_query_models() -> None:
    from tools import analytics

    assert isinstance(analytics.analytics, Toolset) and not hasattr(analytics, "toolset")
    for spec in analytics.analytics.tools:
        fn = getattr(analytics, spec.name)
        assert inspect.iscoroutinefunction(fn), spec.name
        assert next(iter(inspect.signature(fn, eval_str=True).parameters)) == "rt", spec.name
    # The range arguments are the model's: the same bounds as REST, in one place.
    listed = Tool.from_function(served_function(analytics.analytics_events_list), name="e").parameters
    assert {"name", "client_id", "period", "start", "end", "time_zone", "limit", "cursor"} <= set(
        listed["properties"]
    )
    assert listed["properties"]["time_zone"]["maxLength"] == 64


def test_the_funnel_tool_spells_its_step_model_out_in_its_own_schema() -> None:
    from servers.mcp import tool_definitions
    from tools import analytics

    schema = tool_definitions(analytics.analytics.tools)["analytics_funnel"]["inputSchema"]
    assert "$defs" not in schema and "$ref" not in str(schema)
    steps = schema["properties"]["steps"]
    step = next(s for s in steps["items"]["anyOf"] if s.get("type") == "object")
    assert step["required"] == ["event"]
    assert step["properties"]["event"]["maxLength"] == 100
    assert step["additionalProperties"] is False


def test_every_tool_body_is_at_most_five_lines() -> None:
    """A tool adapts arguments and calls core; a longer body is a rule living in a door."""
    import ast
    import textwrap

    from servers.mcp import toolsets

    long: dict[str, int] = {}
    for ts in toolsets(ToolRuntime(None)):  # type: ignore[arg-type]
        for spec in ts.tools:
            fn = inspect.unwrap(spec.fn)
            node = ast.parse(textwrap.dedent(inspect.getsource(fn))).body[0]
            assert isinstance(node, ast.AsyncFunctionDef), spec.name
            body = node.body[1:] if ast.get_docstring(node) is not None else node.body
            lines = (body[-1].end_lineno or 0) - body[0].lineno + 1
            if lines > 5:
                long[spec.name] = lines
    assert not long, long
