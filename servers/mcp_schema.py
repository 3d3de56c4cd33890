"""What tools/list costs an agent: the JSON Schemas of a tool made compact, never stricter.

Every agent pays for tools/list in tokens, at every session start. Pydantic's schemas repeat
themselves: generated titles, `default: null`, and in output schemas the same `$defs` (booking,
thread, client, ...) copied into every tool that returns them. The rewrites below only drop what
an agent cannot act on, so a schema still accepts every value it accepted:

- titles and `default`s go (annotations, not constraints); `anyOf: [T, null]` becomes
  `type: [T, "null"]` (the same set of values);
- input schemas are inlined (a nested input model, a funnel step, is spelled out where it is
  used; only a recursive model would keep a `$ref`), so every tool's schema stands alone;
- output schemas are inlined (no `$defs`, no `$ref`): the result's own fields are typed, and an
  object nested deeper than `OUTPUT_DEPTH` becomes `{"type": "object"}` whose description names
  its fields (any object, a superset); `required` and `format` go (every field of our results is
  always there; formats are annotations);
- tools of one toolset that return the same shape spell it out once (`share_outputs`).

The size a caller pays is `wire_chars`: the compact JSON of the tools/list `tools` array.
"""

from __future__ import annotations

import json
from typing import Any

from mcp.server.mcpserver.tools import Tool
from mcp.types import ToolAnnotations

__all__ = [
    "EVERYTHING_BUDGET",
    "NEW_PERSON_BUDGET",
    "OUTPUT_DEPTH",
    "compact_annotations",
    "compact_input",
    "compact_output",
    "share_outputs",
    "wire_chars",
]

# Levels of nested objects an output schema spells out: 0 = the result's own fields only (a list
# tool's items, a booking's client, are named by their fields). Their shape is one `*_get` away,
# and spelling it out in every tool that returns them is what made tools/list heavy.
OUTPUT_DEPTH = 0
# What tools/list may cost, in `wire_chars` (tests/tools/test_tools_list_size.py holds them):
# a freshly signed-up person (tenancy + registry), and every toolset as a platform admin sees it.
# Raised from 16,000 when joining an org became the person's consent: `org_members_invite` (an
# invitation, by handle or email, ~1.5 kB) replaced `org_members_add` (a membership, ~0.8 kB).
NEW_PERSON_BUDGET = 16_800
# Raised from 90,000 by the platform operators' dead-letter tools (admin toolset, admins only),
# then from 93,000 by the client's conversation link (two messaging tools) and bookings'
# reminder state and approval setting (issue 16), then from 94,000 by the inbox's exact counts
# (`messaging_threads_count`) and a booking's times to move to (`bookings_reschedule_slots`),
# 1.5 kB each; neither toolset is a default one; then by the ~0.75 kB that `org_members_invite`
# weighs more than the `org_members_add` it replaced (above).
EVERYTHING_BUDGET = 98_300
_Schema = dict[str, Any]


def wire_chars(tools: list[dict[str, Any]]) -> int:
    """Characters of the `tools` array of a tools/list result as the wire carries it: compact
    JSON (no spaces), UTF-8 text unescaped (as pydantic serialises it), `None` fields left out."""
    return len(json.dumps(tools, separators=(",", ":"), ensure_ascii=False))


def compact_input(schema: _Schema) -> _Schema:
    """The arguments schema: self-contained (local `$defs` inlined where they are used), without
    titles and `default: null` (an argument not in `required` is optional already); every
    constraint kept, they tell the agent what is accepted."""
    defs: _Schema = schema.get("$defs") or {}
    kept: set[str] = set()
    inlined = _inline(schema, defs, seen=(), kept=kept)
    if isinstance(inlined, dict):
        inlined.pop("$defs", None)
        if kept:
            # Only a recursive model stays a reference: it cannot be spelled out in full.
            inlined["$defs"] = {
                name: _inline(defs[name], defs, seen=(name,), kept=kept) for name in sorted(kept)
            }
    out = _clean(inlined, drop_null_default=True)
    return out if isinstance(out, dict) else schema


def compact_output(schema: _Schema, depth: int = OUTPUT_DEPTH) -> _Schema:
    """The result schema, self-contained and shallow: see the module docstring."""
    defs: _Schema = schema.get("$defs") or {}
    out = _shrink(schema, defs, level=0, max_level=depth, seen=())
    return out if isinstance(out, dict) else schema


def compact_annotations(annotations: ToolAnnotations) -> ToolAnnotations:
    """Only the hints that say something. The MCP spec defines `destructiveHint` and
    `idempotentHint` for tools that are not read-only, and `idempotentHint` defaults to false.
    `readOnlyHint` (hosts decide on it), `destructiveHint` of a write (default true) and
    `openWorldHint` (default true, wrong for most of ours) are always stated."""
    if annotations.read_only_hint:
        return annotations.model_copy(update={"destructive_hint": None, "idempotent_hint": None})
    return annotations.model_copy(update={"idempotent_hint": annotations.idempotent_hint or None})


# --- the rewrites ----------------------------------------------------------------------------------

_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_ONE = ("items", "additionalProperties", "not", "contains", "propertyNames", "if", "then", "else")
_MANY = ("anyOf", "oneOf", "allOf", "prefixItems")


def _clean(node: Any, *, drop_null_default: bool) -> Any:
    """A copy without titles (and `default: null`), `anyOf: [T, null]` written as a type list."""
    if not isinstance(node, dict):
        return node
    out: _Schema = {}
    for key, value in node.items():
        if key == "title" and isinstance(value, str):
            continue
        if key == "default" and value is None and drop_null_default:
            continue
        if key in _MAPS and isinstance(value, dict):
            out[key] = {k: _clean(v, drop_null_default=drop_null_default) for k, v in value.items()}
        elif key in _ONE:
            out[key] = _clean(value, drop_null_default=drop_null_default)
        elif key in _MANY and isinstance(value, list):
            out[key] = [_clean(v, drop_null_default=drop_null_default) for v in value]
        else:
            out[key] = value
    return _merge_nullable(out)


def _inline(node: Any, defs: _Schema, *, seen: tuple[str, ...], kept: set[str]) -> Any:
    """A copy with every `#/$defs/X` reference replaced by X itself (the reference's own keys,
    a description, win); a reference back into a model being inlined stays, and is `kept`."""
    if isinstance(node, list):
        return [_inline(v, defs, seen=seen, kept=kept) for v in node]
    if not isinstance(node, dict):
        return node
    local = _local_ref(node, defs)
    if local is not None:
        name, target = local
        if target is not None and name not in seen:
            return _inline(_resolved(node, target), defs, seen=(*seen, name), kept=kept)
        if target is not None:
            kept.add(name)
    return {k: v if k == "$defs" else _inline(v, defs, seen=seen, kept=kept) for k, v in node.items()}


def _local_ref(node: _Schema, defs: _Schema) -> tuple[str, _Schema | None] | None:
    """For a `#/$defs/X` reference: X, and its definition (None when there is none)."""
    ref = node.get("$ref")
    if not (isinstance(ref, str) and ref.startswith("#/$defs/")):
        return None
    name = ref.removeprefix("#/$defs/")
    target = defs.get(name)
    return name, target if isinstance(target, dict) else None


def _resolved(node: _Schema, target: _Schema) -> _Schema:
    """The definition a reference names, under the reference's own keys (its description wins)."""
    return {**target, **{k: v for k, v in node.items() if k != "$ref"}}


def _merge_nullable(schema: _Schema) -> _Schema:
    """`anyOf: [T, {"type": "null"}]` → T with `"null"` added to its type (and to its enum)."""
    options = schema.get("anyOf")
    if not (isinstance(options, list) and len(options) == 2 and {"type": "null"} in options):
        return schema
    other = options[0] if options[1] == {"type": "null"} else options[1]
    if not isinstance(other, dict) or {"$ref", "const", "anyOf", "oneOf", "allOf"} & set(other):
        return schema
    kind = other.get("type")
    if isinstance(kind, str):
        types = [kind, "null"]
    elif isinstance(kind, list) and all(isinstance(k, str) for k in kind):
        types = kind if "null" in kind else [*kind, "null"]
    else:
        return schema
    merged = {k: v for k, v in schema.items() if k != "anyOf"}
    # The option's own keywords apply to non-null values only; keys of the wrapper (its
    # description) win, as they did beside the anyOf.
    for key, value in other.items():
        merged.setdefault(key, value)
    inner, outer = other.get("description"), schema.get("description")
    if isinstance(inner, str) and isinstance(outer, str) and inner != outer:
        merged["description"] = f"{outer} {inner}"
    merged["type"] = types
    if isinstance(other.get("enum"), list) and None not in other["enum"]:
        merged["enum"] = [*other["enum"], None]
    return merged


def _shrink(node: Any, defs: _Schema, *, level: int, max_level: int, seen: tuple[str, ...]) -> Any:
    if not isinstance(node, dict):
        return node
    local = _local_ref(node, defs)
    if local is not None:
        name, target = local
        if target is None or name in seen:
            # A cycle (or a dangling ref): accept anything rather than loop.
            return _keep_description(node, {})
        return _shrink(_resolved(node, target), defs, level=level, max_level=max_level, seen=(*seen, name))
    if _is_object(node) and level > max_level:
        return _summary(node, defs)
    out: _Schema = {}
    for key, value in node.items():
        if key in ("title", "default", "$defs", "examples", "required", "format"):
            continue
        if key == "additionalProperties" and value is True:
            continue
        if key == "properties" and isinstance(value, dict):
            out[key] = {
                k: _shrink(v, defs, level=level + 1, max_level=max_level, seen=seen) for k, v in value.items()
            }
        elif key in ("items", "contains"):
            # A list does not add a level: the items of a list are what a list tool returns.
            out[key] = _shrink(value, defs, level=level, max_level=max_level, seen=seen)
        elif key == "additionalProperties" and isinstance(value, dict):
            out[key] = _shrink(value, defs, level=level + 1, max_level=max_level, seen=seen)
        elif key in _MANY and isinstance(value, list):
            out[key] = [_shrink(v, defs, level=level, max_level=max_level, seen=seen) for v in value]
        else:
            out[key] = value
    return _merge_nullable(out)


def _is_object(schema: _Schema) -> bool:
    kind = schema.get("type")
    return "properties" in schema and (kind == "object" or kind is None)


def _summary(schema: _Schema, defs: _Schema) -> _Schema:
    """Any object, described by its field names: `{a, b, c{x,y}}` (`c` holds an object)."""
    names = "{" + ", ".join(_field_names(schema, defs, depth=2)) + "}"
    own = schema.get("description")
    text = f"{own} {names}" if isinstance(own, str) and own else names
    return {"type": "object", "description": text}


def _field_names(schema: _Schema, defs: _Schema, *, depth: int) -> list[str]:
    names: list[str] = []
    for name, sub in (schema.get("properties") or {}).items():
        inner = _object_of(sub, defs)
        if inner is not None and depth > 1:
            names.append(f"{name}{{{','.join(_field_names(inner, defs, depth=depth - 1))}}}")
        else:
            names.append(name)
    return names


def _object_of(schema: Any, defs: _Schema) -> _Schema | None:
    """The object schema a property holds (through a $ref, a nullable anyOf or a list), if any."""
    if not isinstance(schema, dict):
        return None
    local = _local_ref(schema, defs)
    if local is not None:
        return _object_of(local[1], defs)
    if _is_object(schema):
        return schema
    if isinstance(schema.get("items"), dict):
        return _object_of(schema["items"], defs)
    for option in schema.get("anyOf") or []:
        found = _object_of(option, defs)
        if found is not None:
            return found
    return None


def _keep_description(node: _Schema, schema: _Schema) -> _Schema:
    if isinstance(node.get("description"), str):
        return {**schema, "description": node["description"]}
    return schema


def share_outputs(tools: list[Tool], toolset_of: dict[str, str]) -> None:
    """Tools of one toolset that return the same shape spell it out once: in the read-only tool
    that returns it (`*_get` first), else the first by name. The others' output schema becomes
    an object pointing there (`bookings_confirm` returns what `bookings_get` does): it accepts
    what it accepted, and tools/list stops paying for the same booking seven times. In place,
    so every reader of the SDK's `Tool` sees it."""
    groups: dict[tuple[str, str], list[Tool]] = {}
    for tool in tools:
        schema = tool.output_schema
        if schema is not None and "properties" in schema:
            key = (toolset_of.get(tool.name, ""), json.dumps(schema, sort_keys=True))
            groups.setdefault(key, []).append(tool)
    for group in groups.values():
        if len(group) < 2:
            continue
        owner = min(group, key=_owner_rank)
        for tool in group:
            if tool is owner or tool.output_schema is None:
                continue
            schema = tool.output_schema
            own = schema.get("description")
            text = f"Same as {owner.name}'s result."
            schema.clear()
            schema.update({"type": "object", "description": f"{own} {text}" if own else text})


def _owner_rank(tool: Tool) -> tuple[bool, bool, str]:
    read_only = bool(tool.annotations and tool.annotations.read_only_hint)
    return (not read_only, not tool.name.endswith("_get"), tool.name)
