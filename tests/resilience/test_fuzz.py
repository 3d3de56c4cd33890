"""Fuzzing every door: schemathesis against the OpenAPI schema (every operation, valid and
invalid inputs, authenticated, in both contexts) finds no 5xx and no answer the schema does
not promise; generated calls of every MCP tool from its input
schema find no internal error; oversized bodies are refused with 413 everywhere.

Examples are derandomized (a failure reproduces) and few per operation, to stay in budget."""

from __future__ import annotations

import json
import re
import string
import uuid
from typing import Any

import httpx
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from mcp import Client
from schemathesis.core.result import Ok
from schemathesis.generation import GenerationMode
from schemathesis.python.asgi import get_client, shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from core.config import Settings
from core.uow import Database
from servers.mcp import build_server
from tests.conftest import make_org, signup
from tests.support.registry import install

EXAMPLES = 6
# Each call acts in the personal context or in the fuzzer's org.
CONTEXTS = ("personal", "org")
CONFORMANCE = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=list(HealthCheck),
    phases=[Phase.explicit, Phase.generate],
)


def test_openapi_fuzzing_finds_no_server_error(settings: Settings) -> None:
    from servers.app import create_app

    # Its own app and Database: schemathesis runs the app on its own event loop.
    app = create_app(settings.model_copy(update={"relay_enabled": False}))
    try:
        # schemathesis types an ASGI message as a dict, FastAPI (as the ASGI spec) as a mapping.
        with get_client(app) as c:  # type: ignore[arg-type]
            slug = f"fz-{uuid.uuid4().hex[:10]}"
            r = c.post(
                "/v1/auth/signup",
                json={
                    "email": f"{slug}@example.com",
                    "password": "pw-" + slug,
                    "slug": slug,
                    "display_name": "Fz",
                },
            )
            token = r.json()["access_token"]
            org = f"fzo-{uuid.uuid4().hex[:8]}"
            assert (
                c.post("/v1/orgs", json={"slug": org, "name": "Fuzz"}, headers=_bearer(token)).status_code
                == 201
            )
            # An API key, so a fuzzed logout of every session cannot lock the fuzzer out.
            key = c.post(
                "/v1/api-keys", json={"name": "fuzz", "scopes": ["*"]}, headers=_bearer(token)
            ).json()
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operations = []
        for result in schema.get_all_operations():
            assert isinstance(result, Ok), result.err()
            operations.append(result.ok())
        assert len(operations) >= 30  # every route of every feature is enumerated
        failures: list[str] = []
        calls = 0
        for operation in operations:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                if mode is GenerationMode.NEGATIVE and not _has_inputs(operation):
                    continue

                @given(case=operation.as_strategy(generation_mode=mode), context=st.sampled_from(CONTEXTS))
                @FUZZ
                def call(case: Any, context: str) -> None:
                    nonlocal calls
                    calls += 1
                    where = {"personal": "personal", "org": org}[context]
                    headers = {**_bearer(key["token"]), "X-Atlilith-Org": where}
                    if case.headers:
                        headers = {
                            **{k: v for k, v in case.headers.items() if k.lower() != "authorization"},
                            **headers,
                        }
                        if "x-atlilith-org" in {k.lower() for k in case.headers}:
                            headers.pop("X-Atlilith-Org")
                    response = case.call(headers=headers)
                    label = f"{case.operation.method.upper()} {case.operation.path} ({context})"
                    if response.status_code >= 500:
                        failures.append(f"{label} -> {response.status_code}")
                    sent = repr((case.path_parameters, case.query, case.headers, case.body))
                    assert not leaks_internals(response.text, sent)
                    # The answer is one the schema promised: a documented status, its media
                    # type, a body matching its schema (problem+json for every error).
                    try:
                        case.validate_response(response, checks=CONFORMANCE, headers=headers)
                    except Exception as exc:  # schemathesis raises a group of check failures
                        failures.append(f"{label} -> {response.status_code}: {str(exc)[:300]}")

                call()
        assert failures == [], sorted(set(failures))
        assert calls >= len(operations) * 2
    finally:
        shutdown_lifespans()


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _has_inputs(operation: Any) -> bool:
    definition = operation.definition.raw
    return bool(definition.get("parameters") or definition.get("requestBody"))


# --- MCP tools from their input schemas ---------------------------------------------------------


def strategy_for(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values for the JSON Schema subset tool inputs use, mostly valid, sometimes not: a tool must
    answer every one with a result or a clean error."""
    if "$ref" in schema:
        return strategy_for(defs[schema["$ref"].split("/")[-1]], defs)
    for key in ("anyOf", "oneOf"):
        if key in schema:
            return st.one_of([strategy_for(s, defs) for s in schema[key]])
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    if "const" in schema:
        return st.just(schema["const"])
    kind = schema.get("type")
    if isinstance(kind, list):
        return st.one_of([strategy_for({**schema, "type": k}, defs) for k in kind])
    if kind == "null":
        return st.none()
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        return st.integers(schema.get("minimum", -(2**40)), schema.get("maximum", 2**40))
    if kind == "number":
        return st.floats(allow_nan=False, allow_infinity=False)
    if kind == "array":
        items = strategy_for(schema.get("items", {}), defs)
        return st.lists(items, min_size=schema.get("minItems", 0), max_size=min(schema.get("maxItems", 4), 4))
    if kind == "object":
        return object_strategy(schema, defs)
    if kind == "string":
        return string_strategy(schema)
    return _any_json()


def string_strategy(schema: dict[str, Any]) -> st.SearchStrategy[str]:
    fmt = schema.get("format")
    if fmt == "uuid":
        return st.uuids().map(str)
    if fmt == "email":
        return st.from_regex(r"\A[a-z]{1,8}@[a-z]{1,8}\.(com|org)\Z")
    if fmt == "date-time":
        return st.datetimes().map(lambda d: d.isoformat() + "Z")
    low, high = schema.get("minLength", 0), min(schema.get("maxLength", 60), 60)
    if "pattern" in schema:
        pattern = schema["pattern"]
        return st.from_regex(pattern, fullmatch=True).filter(
            lambda s: low <= len(s) <= schema.get("maxLength", 10**6)
        )
    slugish = st.text(
        string.ascii_lowercase + string.digits + "-", min_size=max(low, 1), max_size=max(high, 1)
    )
    return st.one_of(slugish, st.text(min_size=low, max_size=high))


def object_strategy(schema: dict[str, Any], defs: dict[str, Any]) -> st.SearchStrategy[dict[str, Any]]:
    props: dict[str, Any] = schema.get("properties", {})
    required = set(schema.get("required", []))
    fixed = {k: strategy_for(v, defs) for k, v in props.items() if k in required}
    optional = {k: strategy_for(v, defs) for k, v in props.items() if k not in required}
    return st.fixed_dictionaries(fixed, optional=optional)


def _any_json() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
        max_leaves=5,
    )


def mutate(valid: st.SearchStrategy[dict[str, Any]], props: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """Invalid variants: a field of the wrong type, or an unknown field."""
    if not props:
        return valid
    wrong = st.tuples(valid, st.sampled_from(props), _any_json()).map(lambda t: {**t[0], t[1]: t[2]})
    extra = valid.map(lambda args: {**args, "unexpected_field": 1})
    return st.one_of(wrong, extra)


def examples(strategy: st.SearchStrategy[Any], count: int) -> list[Any]:
    found: list[Any] = []

    @given(strategy)
    @settings(FUZZ, max_examples=count, phases=[Phase.generate])
    def collect(value: Any) -> None:
        found.append(value)

    collect()
    return found


def leaks_internals(answer: str, sent: str) -> bool:
    """A stack trace, or the driver's name where the caller did not send it: Hypothesis draws
    strings from the project's own constants (`postgresql+asyncpg`), and an error may rightly
    echo the value it refuses (`not_a_member` names the org asked for)."""
    return "Traceback" in answer or ("asyncpg" in answer and "asyncpg" not in sent)


async def test_mcp_tools_called_with_generated_arguments_never_fail_internally(
    client: httpx.AsyncClient, db: Database
) -> None:
    owner = await signup(client, "mcpfz")
    org = await make_org(client, owner)
    key = (await client.post("/v1/api-keys", json={"name": "fz", "scopes": ["*"]}, headers=owner.h())).json()
    # Every component installed in both contexts: the fuzzer reaches the tools, not the gate.
    await install(client, owner)
    await install(client, owner, org=org)
    server = build_server(db, static_token=key["token"], toolset_names=["all"])
    internal: list[str] = []
    calls = 0
    async with Client(server) as mcp:
        tools = (await mcp.list_tools()).tools
        assert tools
        for tool in tools:
            schema = tool.input_schema
            defs = schema.get("$defs", {})
            valid = object_strategy(schema, defs)
            props = list(schema.get("properties", {}))

            def with_org(args: dict[str, Any], p: list[str] = props) -> dict[str, Any]:
                return {**args, "org": org} if "org" in p else args

            in_org = valid.map(with_org)
            cases = examples(valid, EXAMPLES) + examples(in_org, EXAMPLES) + examples(mutate(valid, props), 3)
            for args in cases:
                calls += 1
                result = await mcp.call_tool(tool.name, args)
                body = " ".join(getattr(b, "text", "") for b in result.content)
                if result.is_error and '"internal_error"' in body:
                    internal.append(f"{tool.name}({json.dumps(args, ensure_ascii=False)[:200]})")
                assert not leaks_internals(body, json.dumps(args, ensure_ascii=False)), tool.name
    assert internal == [], internal
    assert calls >= len(tools) * EXAMPLES


# --- 413 for oversized bodies, on every door ------------------------------------------------------


def _fill(path: str, org: str) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: org if m.group(1) in {"slug"} else str(uuid.uuid4()), path)


async def test_every_route_with_a_body_refuses_oversized_ones_with_413(
    client: httpx.AsyncClient, app: Any
) -> None:
    owner = await signup(client, "big")
    org = await make_org(client, owner)
    limit = app.state.settings.max_body_bytes
    overrides: dict[str, int] = app.state.body_limit_overrides

    def oversized(path: str) -> str:
        own = next((v for prefix, v in overrides.items() if path.startswith(prefix)), limit)
        return json.dumps({"name": "x" * (own + 1)})

    big = oversized("/")
    spec = (await client.get("/openapi.json")).json()
    checked: list[str] = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if "requestBody" not in op:
                continue
            url = _fill(path, org)
            r = await client.request(
                method.upper(),
                url,
                content=oversized(path),
                headers={**owner.h(org), "content-type": "application/json"},
            )
            assert r.status_code == 413, (method, path, r.status_code)
            assert r.json()["code"] == "payload_too_large"
            checked.append(f"{method} {path}")
    assert len(checked) >= 15
    # The MCP endpoint too, declared or streamed in chunks of unknown length.
    r = await client.post("/mcp", content=big, headers={**owner.h(), "content-type": "application/json"})
    assert r.status_code == 413

    async def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    r = await client.post(
        "/v1/clients", content=chunks(), headers={**owner.h(org), "content-type": "application/json"}
    )
    assert r.status_code == 413
    # Nothing was written by any refused request.
    listed = (await client.get("/v1/clients", headers=owner.h(org))).json()
    assert listed["items"] == []
