"""The OpenAPI document tells the truth: clean operationIds (the MCP tool's name where one does
the same work), problem+json for every error, the headers a client relies on, described tags.

FastAPI's own document is the starting point; this module corrects it once, when the app is
built, so a new route is documented by the same rules without anyone remembering them."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute

from core.doors import operations_called
from tools.base import ToolSpec

PROBLEM_MEDIA_TYPE = "application/problem+json"

TAGS: list[dict[str, str]] = [
    {"name": "auth", "description": "Sign up, sign in, refresh and switch context."},
    {"name": "me", "description": "You: your profile, password and invitations to orgs."},
    {"name": "api keys", "description": "Keys for agents, scripts and peer services."},
    {
        "name": "oauth",
        "description": "MCP hosts signed in through OAuth: the consent page's requests and your "
        "connected apps (docs/oauth.md).",
    },
    {"name": "orgs", "description": "Orgs you own or belong to: members, roles, invitations."},
    {"name": "brands", "description": "An org's brands and their public site configuration."},
    {"name": "clients", "description": "The provider's clients, one record per person served."},
    {"name": "messaging", "description": "Threads, messages, agent drafts and channel settings."},
    {"name": "events", "description": "The context's live events as a Server-Sent Events stream."},
    {"name": "bookings", "description": "Services, availability, slots, holds and bookings."},
    {"name": "manage", "description": "What a client's manage link may do with their booking."},
    {"name": "analytics", "description": "Event ingest and the questions asked of it."},
    {"name": "credits", "description": "The credit balance, holds and the ledger."},
    {"name": "jobs", "description": "Priced work run by components, paid in credits."},
    {"name": "peers", "description": "Peer services that plug in over HTTP and their webhooks."},
    {"name": "registry", "description": "Components: search, install, configure, uninstall."},
    {"name": "identity", "description": "One identity per client across channels (polyseme)."},
    {"name": "admin", "description": "Platform administration: persons, orgs, the audit log."},
    {"name": "health", "description": "Is the process up and its database reachable."},
    {"name": "meta", "description": "Where clients reach this server (its MCP URL) and the scopes of keys."},
]

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "RFC 9457 problem details, with a stable `code` and a `hint` to act on.",
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string", "description": "A URI naming the problem type."},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "Stable machine-readable error code."},
        "hint": {"type": "string", "description": "What to do about it."},
        "trace_id": {"type": ["string", "null"], "description": "Quote it when you report it."},
        "errors": {
            "type": "array",
            "description": "One entry per invalid field.",
            "items": {
                "type": "object",
                "required": ["field", "message"],
                "properties": {
                    "field": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                    "in": {"type": "string"},
                },
            },
        },
    },
    "additionalProperties": True,
}


def _header(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"description": description, "schema": schema or {"type": "string"}}


HEADERS: dict[str, dict[str, Any]] = {
    "X-Trace-Id": _header("The request's trace id (also in logs and in problem bodies)."),
    "Retry-After": _header("Seconds to wait before retrying (429, 503).", {"type": "integer", "minimum": 0}),
    "ETag": _header("The representation's tag: send it back in `If-Match` to write only if unchanged."),
    "RateLimit": _header("What is left of the tightest limit this request counted against."),
    "RateLimit-Policy": _header("The limits this request counted against (IETF RateLimit fields)."),
    "WWW-Authenticate": _header("Why the credential was refused (401)."),
}

RATE_HEADERS = ("RateLimit", "RateLimit-Policy")

# What each error status means across the API; an operation documents the ones it can answer.
ERRORS: dict[str, str] = {
    "400": "Malformed request (for example, a body that is not JSON).",
    "401": "Missing, expired or revoked credential.",
    "403": "Authenticated, but not allowed in this context.",
    "404": "No such resource in this context.",
    "409": "Conflicts with the current state (taken slot, duplicate, wrong status).",
    "413": "Request body too large.",
    "422": "Invalid input: `errors` lists each field.",
    "412": "`If-Match` no longer matches: re-read the resource and retry.",
    "429": "Too many requests: wait `Retry-After` seconds.",
}
# Anything else a request can meet (402 out of credits, 410 gone, 412 stale, 423 locked ...).
OTHER_4XX = "4XX"


def operation_names(routes: Iterable[APIRoute], specs: Iterable[ToolSpec]) -> dict[tuple[str, str], str]:
    """(METHOD, path) -> operationId: the MCP tool doing the same core operations, else
    `<tag>_<function>`. Ids stay unique, so a generated client gets one method per operation."""
    by_ops: dict[frozenset[str], list[str]] = {}
    for spec in specs:
        by_ops.setdefault(frozenset(operations_called(spec.fn)), []).append(spec.name)
    names: dict[tuple[str, str], str] = {}
    taken: set[str] = set()
    # Reads claim a tool's name before writes that happen to call the same operation.
    for route in sorted(routes, key=lambda r: ("GET" not in (r.methods or ()), r.path)):
        ops = frozenset(operations_called(route.endpoint))
        tools = [t for t in by_ops.get(ops, []) if t not in taken] if ops else []
        if len(tools) == 1:
            name = tools[0]
        else:
            prefix = str(route.tags[0]).replace(" ", "_") if route.tags else "atlilith"
            name = route.name if route.name.startswith(prefix) else f"{prefix}_{route.name}"
        while name in taken:
            name += "_"
        taken.add(name)
        for method in route.methods or ():
            names[(method.upper(), route.path)] = name
    return names


def install_openapi(app: FastAPI, names: dict[tuple[str, str], str]) -> None:
    """Replace `app.openapi` with the corrected document (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            spec = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
                tags=TAGS,
            )
            for path, item in spec.get("paths", {}).items():
                for method, op in item.items():
                    op["operationId"] = names.get((method.upper(), path), op.get("operationId"))
            app.openapi_schema = correct(spec)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def correct(spec: dict[str, Any]) -> dict[str, Any]:
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas["Problem"] = PROBLEM_SCHEMA
    spec["components"]["headers"] = HEADERS
    problem = {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}
    for path, item in spec.get("paths", {}).items():
        trace: dict[str, Any] = {"X-Trace-Id": {"$ref": "#/components/headers/X-Trace-Id"}}
        if path.startswith("/v1/"):
            trace.update({name: {"$ref": f"#/components/headers/{name}"} for name in RATE_HEADERS})
        for op in item.values():
            responses: dict[str, Any] = op.setdefault("responses", {})
            for status, response in responses.items():
                response.setdefault("headers", {}).update(trace)
                if status.startswith(("4", "5")):
                    # A route's own error entries (402 ...) answer problem+json like the rest.
                    response["content"] = problem
            secured = "security" in op
            conditional = _conditional(item)
            if conditional:
                for status, response in responses.items():
                    if status.startswith("2") and status != "204":
                        response["headers"]["ETag"] = {"$ref": "#/components/headers/ETag"}
            for status in _errors_of(path, op, secured=secured) + (["412"] if _takes_if_match(op) else []):
                entry: dict[str, Any] = {
                    "description": ERRORS.get(status, "Client error."),
                    "content": problem,
                    "headers": dict(trace),
                }
                if status == "401":
                    entry["headers"]["WWW-Authenticate"] = {"$ref": "#/components/headers/WWW-Authenticate"}
                if status == "429":
                    entry["headers"]["Retry-After"] = {"$ref": "#/components/headers/Retry-After"}
                responses.setdefault(status, entry)
    return spec


def _takes_if_match(op: dict[str, Any]) -> bool:
    return any(p.get("in") == "header" and p["name"].lower() == "if-match" for p in op.get("parameters", []))


def _conditional(item: dict[str, Any]) -> bool:
    """A resource whose writes honour `If-Match`: its reads and writes carry an `ETag`."""
    return any(_takes_if_match(op) for op in item.values())


def _errors_of(path: str, op: dict[str, Any], *, secured: bool) -> list[str]:
    if not path.startswith("/v1/"):
        return []
    found = ["401", "422", "429", OTHER_4XX]
    if op.get("requestBody"):
        found += ["400", "413"]
    if secured:
        found += ["403", "404"]
    if op.get("requestBody"):
        found.append("409")
    return sorted(set(found))
