"""tools/list stays lean (the budgets every agent pays at session start) and its compacted
schemas stay valid JSON Schema that accept everything the full pydantic schemas accept."""

from __future__ import annotations

import re
import uuid
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator
from mcp import Client
from mcp.server.mcpserver.tools import Tool

from core.uow import Database
from servers.mcp import build_server, tool_definitions, toolsets
from servers.mcp_schema import EVERYTHING_BUDGET, NEW_PERSON_BUDGET, compact_output, wire_chars
from tests.conftest import signup
from tests.support.billing import make_admin
from tools.base import ToolRuntime, ToolSpec


def _by_toolset(listed: list[dict[str, Any]], toolset_of: dict[str, str]) -> str:
    sizes: dict[str, list[dict[str, Any]]] = {}
    for tool in listed:
        sizes.setdefault(toolset_of[tool["name"]], []).append(tool)
    return ", ".join(f"{name} {len(ts)} tools {wire_chars(ts)}" for name, ts in sorted(sizes.items()))


async def _listed(db: Database, token: str, names: list[str] | None = None) -> list[dict[str, Any]]:
    async with Client(build_server(db, static_token=token, toolset_names=names)) as c:
        tools = (await c.list_tools()).tools
    return [t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in tools]


async def test_tools_list_fits_its_budgets(client: httpx.AsyncClient, db: Database) -> None:
    sets = toolsets(ToolRuntime(db))
    toolset_of = {t.name: ts.name for ts in sets for t in ts.tools}
    fresh = await signup(client)
    new_person = await _listed(db, fresh.token)
    assert {toolset_of[t["name"]] for t in new_person} == {"tenancy", "registry"}
    size = wire_chars(new_person)
    assert size <= NEW_PERSON_BUDGET, (
        f"new person: {size} > {NEW_PERSON_BUDGET} ({_by_toolset(new_person, toolset_of)})"
    )

    admin = await make_admin(client)
    for ts in sets:
        if ts.installable:
            r = await client.post("/v1/installations", json={"component": ts.name}, headers=admin.h())
            assert r.status_code in (200, 201), r.text
    everything = await _listed(db, admin.token, ["all"])
    assert {t["name"] for t in everything} == set(toolset_of), "every tool of every toolset, admin's too"
    size = wire_chars(everything)
    assert size <= EVERYTHING_BUDGET, (
        f"everything: {size} > {EVERYTHING_BUDGET} ({_by_toolset(everything, toolset_of)})"
    )
    # The same JSON the registry hashes: what the wire carries is what `tool_definitions` says.
    defined = {name: d for ts in sets for name, d in tool_definitions(ts.tools).items()}
    assert all(defined[t["name"]] == t for t in everything)


# --- the compaction only loosens ---------------------------------------------------------------


def _specs() -> list[ToolSpec]:
    return [t for ts in toolsets(ToolRuntime(None)) for t in ts.tools]  # type: ignore[arg-type]


def _original(spec: ToolSpec) -> Tool:
    return Tool.from_function(
        spec.fn,
        name=spec.name,
        description=spec.description,
        annotations=spec.annotations,
        structured_output=True,
    )


_FORMATS = {
    "uuid": str(uuid.UUID(int=7)),
    "date-time": "2026-03-01T09:30:00+01:00",
    "date": "2026-03-01",
    "email": "ada@example.com",
    "uri": "https://example.com/x",
    "time-delta": "PT5M",
    "duration": "PT5M",
}
_CANDIDATES = ("abc", "bookings", "abc-def", "a" * 8, "ABC", "2026-03-01", "09:30", "x1")


def _sample(schema: Any, root: dict[str, Any], full: bool) -> Any:
    """One value the schema accepts: `full` takes every property and the first option of each
    choice, else only required properties and the last option (often null)."""
    if not isinstance(schema, dict) or not schema:
        return "anything"
    if "$ref" in schema:
        target = root["$defs"][schema["$ref"].removeprefix("#/$defs/")]
        return _sample({**target, **{k: v for k, v in schema.items() if k != "$ref"}}, root, full)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            options = schema[key]
            return _sample(options[0] if full else options[-1], root, full)
    if "const" in schema:
        return schema["const"]
    if "enum" in schema:
        return schema["enum"][0 if full else -1]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = kind[0] if full else kind[-1]
    if kind == "null":
        return None
    if kind == "boolean":
        return full
    if kind in ("integer", "number"):
        bound = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = max(float(bound or 0) + (1 if "exclusiveMinimum" in schema else 0), 1)
        high = schema.get("maximum")
        value = min(value, high) if high is not None else value
        return int(value) if kind == "integer" else float(value)
    if kind == "string":
        if schema.get("format") in _FORMATS:
            return _FORMATS[schema["format"]]
        pattern = schema.get("pattern")
        low = int(schema.get("minLength", 0))
        for candidate in _CANDIDATES:
            text = candidate if len(candidate) >= low else candidate * low
            text = text[: schema.get("maxLength", len(text))]
            if pattern is None or re.search(pattern, text):
                return text
        raise AssertionError(f"no sample for {schema}")
    if kind == "array":
        count = schema.get("minItems", 1 if full else 0)
        return [_sample(schema.get("items", {}), root, full) for _ in range(count)]
    if kind == "object" or "properties" in schema:
        required = set(schema.get("required", []))
        props = schema.get("properties", {})
        out = {k: _sample(v, root, full) for k, v in props.items() if full or k in required}
        extra = schema.get("additionalProperties")
        if full and isinstance(extra, dict):
            out["extra_key"] = _sample(extra, root, full)
        return out
    return "anything"


@pytest.mark.parametrize("spec", _specs(), ids=lambda s: s.name)
def test_compacted_schemas_are_valid_and_accept_what_the_originals_accept(spec: ToolSpec) -> None:
    served = {name: d for ts in toolsets(ToolRuntime(None)) for name, d in tool_definitions(ts.tools).items()}  # type: ignore[arg-type]
    definition = served[spec.name]
    original = _original(spec)
    pairs = [("input", original.parameters, definition["inputSchema"])]
    assert original.output_schema is not None, "every tool is typed out"
    pairs.append(("output", original.output_schema, definition["outputSchema"]))
    for side, full_schema, lean in pairs:
        Draft202012Validator.check_schema(lean)
        assert "$ref" not in str(lean) and "$defs" not in lean, (side, "self-contained")
        for variant in (True, False):
            instance = _sample(full_schema, full_schema, variant)
            Draft202012Validator(full_schema).validate(instance)  # the sample is right...
            errors = [e.message for e in Draft202012Validator(lean).iter_errors(instance)]
            assert not errors, (side, instance, errors)  # ...and the lean schema takes it too


def test_a_deep_object_becomes_any_object_named_by_its_fields() -> None:
    schema = {
        "$defs": {
            "Money": {
                "properties": {"amount": {"type": "number"}, "currency": {"type": "string"}},
                "type": "object",
            },
            "Fee": {
                "properties": {"fee": {"$ref": "#/$defs/Money"}, "at": {"type": "string"}},
                "type": "object",
            },
        },
        "properties": {
            "fee": {
                "anyOf": [{"$ref": "#/$defs/Fee"}, {"type": "null"}],
                "default": None,
                "description": "Owed.",
            },
            "id": {"format": "uuid", "type": "string", "title": "Id"},
        },
        "required": ["id"],
        "type": "object",
    }
    assert compact_output(schema) == {
        "properties": {
            "fee": {"type": ["object", "null"], "description": "Owed. {fee{amount,currency}, at}"},
            "id": {"type": "string"},
        },
        "type": "object",
    }
    lean = Draft202012Validator(compact_output(schema))
    assert lean.is_valid({"fee": {"whatever": 1}}) and not lean.is_valid({"fee": 3})


def test_input_models_are_inlined_and_a_recursive_one_keeps_its_reference() -> None:
    from servers.mcp_schema import compact_input

    schema = {
        "$defs": {
            "Step": {
                "properties": {"event": {"type": "string", "title": "Event"}},
                "required": ["event"],
                "type": "object",
                "title": "Step",
            },
            "Node": {
                "properties": {"child": {"anyOf": [{"$ref": "#/$defs/Node"}, {"type": "null"}]}},
                "type": "object",
            },
        },
        "properties": {
            "step": {"anyOf": [{"$ref": "#/$defs/Step"}, {"type": "null"}], "default": None},
            "tree": {"$ref": "#/$defs/Node", "description": "A tree."},
        },
        "type": "object",
    }
    lean = compact_input(schema)
    assert lean["properties"]["step"] == {
        "properties": {"event": {"type": "string"}},
        "required": ["event"],
        "type": ["object", "null"],
    }
    # A model that contains itself cannot be spelled out: its reference, and only it, stays.
    assert lean["properties"]["tree"]["description"] == "A tree."
    assert set(lean["$defs"]) == {"Node"}
    validator = Draft202012Validator(lean)
    assert validator.is_valid({"step": {"event": "x"}, "tree": {"child": {"child": None}}})
    assert not validator.is_valid({"step": {}, "tree": {"child": 3}})
