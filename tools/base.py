"""What every toolset shares: the identity of the caller, the unit of work, errors as results."""

from __future__ import annotations

import functools
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Annotated, Any, ParamSpec, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AfterValidator, BaseModel, Field, ValidationError

from core.auth import authenticate
from core.context import TenantContext
from core.doors import render
from core.errors import DomainError, FieldIssue, Unauthenticated, ValidationFailed
from core.observability import current_trace_id, get_logger, trace
from core.uow import Database, UnitOfWork
from core.validation import TEXT_HINT, text_issues

log = get_logger("atlilith.mcp")
P = ParamSpec("P")
R = TypeVar("R")


def unlisted(max_length: int, *, min_length: int = 0, pattern: str | None = None) -> AfterValidator:
    """A check of a string argument that tools/list does not spell out: for values an agent only
    passes on from another result (slugs, cursors, keys), `maxLength` or a `pattern` in every
    tool's schema tells it nothing it can act on. Still enforced, as invalid arguments."""
    shape = re.compile(pattern) if pattern else None

    def check(value: str | None) -> str | None:
        if value is None:
            return value
        if len(value) > max_length:
            raise ValueError(f"at most {max_length} characters")
        if len(value) < min_length:
            raise ValueError(f"at least {min_length} characters")
        if shape is not None and not shape.fullmatch(value):
            raise ValueError(f"must match {pattern}")
        return value

    return AfterValidator(check)


# Repeated in most tools, so said in as few words as an agent can act on: every agent pays for
# them in tools/list (`servers.mcp_schema`); the server instructions explain `org`, and
# `next_cursor`'s description says what `cursor` takes.
OrgArg = Annotated[str | None, Field(description="Org slug; omit for personal."), unlisted(40)]
IdempotencyArg = Annotated[
    str | None, Field(description="Retry with the same key: first result, no second write."), unlisted(200)
]
LimitArg = Annotated[int, Field(ge=1, le=100)]
CursorArg = Annotated[str | None, unlisted(512)]
# The toolset of the tool being called: `ToolRuntime.context` gates it on the installation.
_calling: ContextVar[Toolset | None] = ContextVar("atlilith_calling_toolset", default=None)


@dataclass
class ToolRuntime:
    """How tools reach the core. Over HTTP the caller's bearer token (already verified by the
    SDK's auth middleware) is read per call; over stdio (and in tests) one fixed credential."""

    db: Database
    static_token: str | None = None

    @property
    def resource(self) -> str:
        """The protected resource tools serve (OAuth tokens minted for it are accepted)."""
        return self.db.settings.mcp_resource_url

    def credential(self) -> str:
        if self.static_token:
            return self.static_token
        access = get_access_token()
        if access is None:
            raise Unauthenticated("no credential on this MCP connection", code="missing_credential")
        return access.token

    @asynccontextmanager
    async def context(
        self, org: str | None = None, *, person_level: bool = False
    ) -> AsyncIterator[tuple[TenantContext, UnitOfWork]]:
        """The unit of work of one tool call, bound to the caller in the chosen context
        (membership re-checked now, not when the token was issued). `person_level`: the
        operation concerns the person whatever the context (platform admin), so the token's
        org claim does not apply."""
        async with self.db.uow(trace_id=current_trace_id()) as uow:
            calling = _calling.get()
            # Gated in the call's own transaction, in the context it acts in: never stale.
            toolset = calling.name if calling is not None and calling.installable else None
            if person_level:
                ctx = await authenticate(
                    uow, self.credential(), None, use_token_org=False, toolset=toolset, resource=self.resource
                )
            else:
                target = org.strip().lower() if org else None
                ctx = await authenticate(
                    uow, self.credential(), target, toolset=toolset, resource=self.resource
                )
            yield ctx, uow


@dataclass(frozen=True)
class ToolSpec:
    name: str
    toolset: str
    description: str
    fn: Callable[..., Awaitable[Any]]
    annotations: ToolAnnotations
    title: str | None = None

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)


@dataclass
class Toolset:
    """Collects the tools of one module; `servers.mcp` picks which to serve."""

    name: str
    description: str
    default: bool = True
    tools: list[ToolSpec] = field(default_factory=list)
    title: str | None = None
    # Every context has it, nothing to install (tenancy, registry).
    always: bool = False
    # For platform operators only: never installable, served only when selected by name and
    # listed only to platform admins; its tools check the operator themselves.
    platform: bool = False

    @property
    def installable(self) -> bool:
        """Its tools answer only in contexts that installed the component."""
        return not (self.always or self.platform)

    def tool(
        self,
        name: str,
        description: str,
        *,
        title: str | None = None,
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            self.tools.append(
                ToolSpec(
                    name=name,
                    toolset=self.name,
                    description=" ".join(description.split()),
                    fn=_guarded(name, self, fn),
                    title=title,
                    annotations=ToolAnnotations(
                        read_only_hint=read_only,
                        destructive_hint=destructive if not read_only else False,
                        idempotent_hint=idempotent or read_only,
                        open_world_hint=open_world,
                    ),
                )
            )
            return fn

        return decorator


# `feature.operation` -> the tool (or other way) an agent reaches it by: hints in core name
# operations (`core.doors`); the server fills this from the tools it builds.
_hint_names: dict[str, str] = {}


def use_hint_names(names: dict[str, str]) -> None:
    _hint_names.clear()
    _hint_names.update(names)


def error_result(err: DomainError) -> CallToolResult:
    """The one shape of every tool error: `isError`, no `structuredContent` (validating clients
    check structured content against the tool's *success* schema, error results included), and
    one JSON object as text: `code`, `message`, `hint`?, `fields`? and the error's extras."""
    body: dict[str, Any] = {"code": err.code, "message": err.message}
    hint = render(err.hint, _hint_names, lambda op: op)
    if hint:
        body["hint"] = hint
    if err.errors:
        body["fields"] = [{"path": e.field, "problem": e.message} for e in err.errors]
    body.update({k: v for k, v in err.extra.items() if k not in body})
    return CallToolResult(
        content=[TextContent(type="text", text=json.dumps(body, ensure_ascii=False, separators=(",", ":")))],
        is_error=True,
    )


def compact(result: R) -> R:
    """Structured content plus the same JSON, compact, as text: the SDK's default text is an
    indented copy, which costs an agent half again as many tokens for nothing."""
    if not isinstance(result, BaseModel):
        return result
    data = result.model_dump(mode="json")
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return CallToolResult(  # type: ignore[return-value]
        content=[TextContent(type="text", text=text)], structured_content=data
    )


def invalid_arguments(tool: str, exc: ValidationError) -> ValidationFailed:
    """Arguments that do not fit the tool's input schema, as an ordinary domain error: the path
    and the problem of each, never the validator's dump (which echoes input and links docs)."""
    issues = [
        FieldIssue(".".join(str(p) for p in e["loc"]) or "arguments", _problem(e), str(e["type"]))
        for e in exc.errors(include_url=False, include_input=False, include_context=False)
    ]
    names = ", ".join(sorted({i.field for i in issues}))
    return ValidationFailed(
        f"invalid arguments: {names}",
        code="invalid_arguments",
        hint=f"fix {names} as `fields` says and call `{tool}` again; its inputSchema in tools/list "
        "gives each argument's type and limits",
        errors=issues,
    )


def _plain_text(tool: str, arguments: dict[str, Any]) -> None:
    """Loose arguments (a `q`, a filter) get the input models' text check before any tool runs:
    a NUL would otherwise reach PostgreSQL and come back as `internal_error`."""
    issues = text_issues(arguments.items())
    if issues:
        names = ", ".join(sorted({i.field for i in issues}))
        raise ValidationFailed(
            f"invalid arguments: {names}",
            code="invalid_arguments",
            hint=f"{TEXT_HINT}, and call `{tool}` again",
            errors=issues,
        )


def internal_error() -> DomainError:
    return DomainError(
        "something went wrong on our side; nothing was changed",
        code="internal_error",
        hint=f"retry; if it persists, report trace id {current_trace_id()}",
    )


def _problem(error: Any) -> str:
    if error["type"] == "missing":
        return "required"
    if error["type"] == "extra_forbidden":
        return "not an argument of this tool"
    return str(error["msg"])


def _guarded(name: str, toolset: Toolset, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Domain errors become `isError` results carrying code and hint; anything else is logged
    with the trace id and reported without internals."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        with trace(current_trace_id() or uuid.uuid4().hex, tool=name):
            outcome = "ok"
            token = _calling.set(toolset)
            try:
                _plain_text(name, kwargs)
                return compact(await fn(*args, **kwargs))
            except DomainError as err:
                outcome = err.code
                return error_result(err)  # type: ignore[return-value]
            except ValidationError as exc:
                outcome = "invalid_arguments"
                return error_result(invalid_arguments(name, exc))  # type: ignore[return-value]
            except Exception:
                outcome = "internal_error"
                log.exception("tool_failed")
                return error_result(internal_error())  # type: ignore[return-value]
            finally:
                _calling.reset(token)
                log.info("tool_call", outcome=outcome, ms=round((time.perf_counter() - started) * 1000, 1))

    return wrapper
