"""What every toolset shares: the identity of the caller, the unit of work, errors as results."""

from __future__ import annotations

import functools
import inspect
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import TracebackType
from typing import Annotated, Any, ParamSpec, Protocol, TypeVar

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.provider import AccessToken
from mcp.server.mcpserver import Context
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from core.context import TenantContext, scope_grants
from core.doors import render
from core.errors import DomainError, FieldIssue, Unauthenticated, ValidationFailed
from core.observability import annotate, current_trace_id, get_logger, step
from core.opener import Operation, Verified, call_in, open_context
from core.pagination import DEFAULT_LIMIT, PageRequest
from core.uow import Database, UnitOfWork
from core.validation import TEXT_HINT, issue_message, text_issues

log = get_logger("atlilith.mcp")
P = ParamSpec("P")
R = TypeVar("R")
M = TypeVar("M", bound=BaseModel)


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
# The org an HTTP request names in `X-Atlilith-Org` (`servers.mcp`): the context of its tool
# calls that pass no `org`, as on the REST door. Unset over stdio.
requested_org: ContextVar[str | None] = ContextVar("atlilith_requested_org", default=None)
# The toolset of the tool being called: `ToolRuntime.context` gates it on the installation.
_calling: ContextVar[Toolset | None] = ContextVar("atlilith_calling_toolset", default=None)
# The argument names the client actually sent in this call (`servers.mcp` sets it): a flat
# model is rebuilt from those only, so "not sent" and "sent as null" stay different.
sent_arguments: ContextVar[frozenset[str] | None] = ContextVar("atlilith_sent_arguments", default=None)


class _FlatMarker:
    """Marks a tool parameter whose model's fields are the tool's own flat arguments."""


FLAT = _FlatMarker()
# `fields: Flat[ServiceUpdateIn]`: the agent passes the model's fields as plain arguments (with
# the model's bounds and descriptions); the tool receives the model, built from what was sent.
Flat = Annotated[M, FLAT]


class Paging(PageRequest):
    """A list tool's `limit` and `cursor`, as flat arguments (`PageArg`)."""

    model_config = ConfigDict(frozen=True)

    limit: LimitArg = DEFAULT_LIMIT
    cursor: CursorArg = None


# A list tool's `page: PageArg = FIRST_PAGE`; the default serves a call of the plain function.
PageArg = Flat[Paging]
FIRST_PAGE = Paging()


@dataclass
class ToolRuntime:
    """How tools reach the core. Over HTTP the caller's bearer token (already verified by the
    SDK's auth middleware) is read per call; over stdio (and in tests) one fixed credential."""

    db: Database
    static_token: str | None = None

    @functools.cached_property
    def resource(self) -> str:
        """The protected resource tools serve (OAuth tokens minted for it are accepted)."""
        return self.db.settings.mcp_resource_url  # settings are frozen

    def credential(self) -> str:
        if self.static_token:
            return self.static_token
        access = get_access_token()
        if access is None:
            raise Unauthenticated("no credential on this MCP connection", code="missing_credential")
        return access.token

    def verified(self) -> Verified | None:
        """What the token verifier found for this very HTTP request (`servers.mcp`), so the
        call does not authenticate the credential again; None over stdio."""
        if self.static_token:
            return None
        access = get_access_token()
        return access.verified if isinstance(access, VerifiedAccessToken) else None

    def unit(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """The unit of work for this call: the one the token verifier opened for this very HTTP
        request, still in its transaction and bound to the caller (taken once: a tool call or a
        tool list), else a new one. Either way it commits or rolls back when the block ends."""
        access = None if self.static_token else get_access_token()
        held = access.take_unit() if isinstance(access, VerifiedAccessToken) else None
        if held is not None:
            return _Adopted(held)
        return self.db.uow(trace_id=current_trace_id())

    @asynccontextmanager
    async def context(
        self, org: str | None = None, *, person_level: bool = False, gates: bool = False
    ) -> AsyncIterator[tuple[TenantContext, UnitOfWork]]:
        """The unit of work of one tool call, bound to the caller in the chosen context
        (membership re-checked in this request, not when the token was issued), the tool's
        component gated on its installation. `person_level`: the operation concerns the person
        whatever the context (own orgs, platform admin), so the credential's org does not apply.
        `gates`: the operation gates components itself (runs and quotes of actions): what the
        context may use is read with its binding (`core.opener.open_context`)."""
        async with self.unit() as uow:
            calling = _calling.get()
            toolset = calling.name if calling is not None and calling.installable else None
            # An `org` argument wins over the request's header; a person-level operation still
            # has the header's membership checked (`core.opener.open_context`), as REST does.
            asked = requested_org.get() if person_level or not org else org.strip().lower()
            ctx = await open_context(
                uow,
                self.credential(),
                asked,
                person_level=person_level,
                toolset=toolset,
                gates=gates,
                resource=self.resource,
                verified=self.verified(),
            )
            annotate(**{"atlilith.context.kind": "org" if ctx.org_id else "personal"})
            yield ctx, uow

    async def call(
        self, org: str | None, operation: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs
    ) -> R:
        """What most tools do: one core operation in the call's `context(org)`."""
        return await call_in(self.context(org), operation, *args, **kwargs)

    async def call_person_level(self, operation: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` for an operation that concerns the person whatever the context (own orgs,
        platform admin), as the REST door's `Caller.call_person_level`."""
        return await call_in(self.context(person_level=True), operation, *args, **kwargs)


class VerifiedAccessToken(AccessToken):
    """The SDK's access token of one HTTP request, carrying what `core.opener` verified: the
    SDK hands this very object to the tools of the request (`get_access_token`). It also holds
    the verifier's unit of work, left open and bound to the caller, so the request's tool call
    runs in that same transaction (no second checkout, BEGIN, binding or COMMIT); whoever does
    not take it, `release` ends it when the HTTP request ends (`servers.mcp.ReleaseUnit`)."""

    # Plain fields, never serialized or shown, rather than pydantic private attributes: every
    # read of one of those goes through `BaseModel.__getattr__` (a few µs each, several a call).
    core_verified: Any = Field(default=None, exclude=True, repr=False)
    held_unit: Any = Field(default=None, exclude=True, repr=False)

    @property
    def verified(self) -> Verified | None:
        found: Verified | None = self.core_verified
        return found

    @classmethod
    def of(cls, verified: Verified, unit: UnitOfWork | None = None, **fields: Any) -> VerifiedAccessToken:
        return cls(core_verified=verified, held_unit=unit, **fields)

    @property
    def holds_unit(self) -> bool:
        return self.held_unit is not None

    def take_unit(self) -> UnitOfWork | None:
        """The open unit of work, to whoever asks first; None afterwards."""
        unit: UnitOfWork | None = self.held_unit
        if unit is not None:
            self.held_unit = None
        return unit

    async def release(self) -> None:
        """Commit and close the unit of work if no call took it (what the verification itself
        wrote, a key's `last_used_at`, is kept as before)."""
        unit = self.take_unit()
        if unit is not None:
            await unit.__aexit__(None, None, None)


class _Adopted(AbstractAsyncContextManager[UnitOfWork]):
    """An already open unit of work, ended (commit or rollback) when the block ends."""

    def __init__(self, unit: UnitOfWork) -> None:
        self._unit = unit

    async def __aenter__(self) -> UnitOfWork:
        return self._unit

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._unit.__aexit__(exc_type, exc, tb)


@dataclass(frozen=True)
class ToolSpec:
    name: str
    toolset: str
    description: str
    fn: Callable[..., Awaitable[Any]]
    annotations: ToolAnnotations
    title: str | None = None
    # The scopes a call needs (core checks them on every call, `TenantContext.require`): a
    # credential without one of them is not shown the tool in tools/list.
    scopes: frozenset[str] = frozenset()

    @property
    def read_only(self) -> bool:
        return bool(self.annotations.read_only_hint)

    def granted(self, scopes: frozenset[str]) -> bool:
        """Whether a credential holding `scopes` may call this tool."""
        return all(scope_grants(scopes, wanted) for wanted in self.scopes)


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
    # The scopes its read tools and its write tools need, unless a tool says otherwise.
    read_scope: str | None = None
    write_scope: str | None = None

    @property
    def installable(self) -> bool:
        """Its tools answer only in contexts that installed the component."""
        return not (self.always or self.platform)

    def tool(
        self,
        *,
        title: str | None = None,
        read_only: bool,
        destructive: bool = False,
        idempotent: bool = False,
        open_world: bool = False,
        scopes: tuple[str, ...] | None = None,
    ) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R]]]:
        """Serve `fn` as a tool, as the MCP SDK does: named after the function, described to the
        agent by its docstring (what, when, what it costs). `scopes`: what a call needs, when
        not the toolset's read or write scope (`()`: none)."""
        default = self.read_scope if read_only else self.write_scope
        needed = frozenset(scopes if scopes is not None else ([default] if default else []))

        def decorator(fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
            if not fn.__doc__:
                raise TypeError(f"tool {fn.__name__}: its docstring is its description; write one")
            name = fn.__name__
            served = served_function(fn) if _takes_runtime(fn) else fn
            self.tools.append(
                ToolSpec(
                    name=name,
                    toolset=self.name,
                    description=" ".join(fn.__doc__.split()),
                    fn=_guarded(name, self, served),
                    title=title,
                    scopes=needed,
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


class ServesTools(Protocol):
    """The MCP server, as a tool sees it through the SDK's `Context`."""

    @property
    def runtime(self) -> ToolRuntime: ...


def _takes_runtime(fn: Callable[..., Any]) -> bool:
    """A module-level tool: its first parameter is the runtime (`rt: ToolRuntime`)."""
    first = next(iter(inspect.signature(fn, eval_str=True).parameters.values()), None)
    return first is not None and first.annotation is ToolRuntime


def _flat_model(annotation: Any) -> type[BaseModel] | None:
    metadata = getattr(annotation, "__metadata__", ())
    if any(isinstance(m, _FlatMarker) for m in metadata):
        model = annotation.__origin__
        assert isinstance(model, type) and issubclass(model, BaseModel)
        return model
    return None


def _flat_parameter(name: str, info: FieldInfo) -> inspect.Parameter:
    """One field of a flat model as a tool argument: its type, bounds and description; the
    model's default where it has a plain one, else optional (the model decides what is missing)."""
    annotation: Any = info.annotation
    described = Field(description=info.description) if info.description else None
    meta = [*info.metadata, *([described] if described is not None else [])]
    typed = Annotated[tuple([annotation, *meta])] if meta else annotation
    if info.is_required():
        return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typed)
    if info.default_factory is not None:
        # Defaulted by a factory (an empty list): null is taken as "not sent", as a plain
        # optional argument would be, and the model fills in its default.
        typed = Annotated[tuple([annotation | None, *meta])]
    default = info.default if info.default is not PydanticUndefined else None
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=typed, default=default)


def served_function(fn: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
    """What the MCP server calls for a module-level tool `fn(rt, ..., fields: Flat[Model])`:
    the flat models' fields become plain arguments, the runtime comes from the server the call
    reaches (the SDK's `Context`), and each flat model is built back from the arguments the
    client sent -- so a model's validators run and `model_fields_set` says what was given."""
    sig = inspect.signature(fn, eval_str=True)
    own = list(sig.parameters.values())[1:]
    flats = {p.name: m for p in own if (m := _flat_model(p.annotation)) is not None}
    public: list[inspect.Parameter] = []
    for param in own:
        model = flats.get(param.name)
        if model is None:
            public.append(param.replace(kind=inspect.Parameter.KEYWORD_ONLY))
        else:
            public.extend(_flat_parameter(n, info) for n, info in model.model_fields.items())
    names = [p.name for p in public]
    if len(names) != len(set(names)):
        raise TypeError(f"{fn.__name__}: flat arguments collide: {sorted(names)}")
    public.append(
        inspect.Parameter("mcp_context", inspect.Parameter.KEYWORD_ONLY, default=None, annotation=Context)
    )

    async def serve(**kwargs: Any) -> R:
        context = kwargs.pop("mcp_context", None)
        if context is None:
            raise RuntimeError(f"{fn.__name__} is served by the MCP server; call the function itself")
        server: ServesTools = context.mcp_server
        sent = sent_arguments.get()
        given = set(kwargs) if sent is None else sent
        for pname, model in flats.items():
            values = {k: kwargs.pop(k) for k in model.model_fields if k in kwargs}
            values = {
                k: v
                for k, v in values.items()
                if v is not None or model.model_fields[k].default_factory is None
            }
            kwargs[pname] = model.model_validate({k: v for k, v in values.items() if k in given})
        return await fn(server.runtime, **kwargs)

    serve.__name__ = fn.__name__
    serve.__qualname__ = fn.__qualname__
    serve.__doc__ = fn.__doc__
    # `core.doors.operations_called` unwraps to the function itself: the core operations a tool
    # calls name it in hints (`servers.hints.mcp_names`). The signature below stops the unwrap.
    serve.__wrapped__ = fn  # type: ignore[attr-defined]
    serve.__signature__ = sig.replace(parameters=public)  # type: ignore[attr-defined]
    # The SDK finds the `Context` parameter by the type hints, not the signature.
    serve.__annotations__ = {p.name: p.annotation for p in public} | {"return": sig.return_annotation}
    return serve


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


def declared_result(fn: Callable[..., Any]) -> type[BaseModel] | None:
    """The pydantic model a tool declares it returns, whose schema is its `outputSchema`; None
    when it returns anything else."""
    annotation = inspect.signature(fn, eval_str=True).return_annotation
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def compact(result: R, declared: type[BaseModel] | None = None) -> R:
    """Structured content plus the same JSON, compact, as text: the SDK's default text is an
    indented copy, which costs an agent half again as many tokens for nothing.

    `declared`: the tool's declared result model. The SDK does not check the structured content
    of these tools against it again (`servers.mcp._tool`): an instance of the model was
    validated when it was built, and re-validating its dump cost more than building it (500
    slots: parsing a thousand datetimes back). Another model (a `Page[T]` built by a generic
    helper) is checked here: its fields as they are (a page's items are instances already), and
    failing that, its dump, as the SDK did."""
    if not isinstance(result, BaseModel):
        return result
    # pydantic writes the compact JSON itself; reading it back gives the JSON-mode dump, for
    # less than dumping to Python and encoding that (`tests/tools/test_tool_results.py`).
    text = result.model_dump_json()
    data = json.loads(text)
    if declared is not None and not isinstance(result, declared):
        try:
            declared.model_validate(dict(result))
        except ValidationError:
            try:
                declared.model_validate(data)
            except ValidationError as exc:
                # Our bug, not the caller's arguments: reported as an internal error.
                raise TypeError(f"result does not fit {declared.__name__}") from exc
    return CallToolResult(  # type: ignore[return-value]
        content=[TextContent(type="text", text=text)], structured_content=data
    )


def invalid_arguments(tool: str, exc: ValidationError) -> ValidationFailed:
    """Arguments that do not fit the tool's input schema, as an ordinary domain error: the path
    and the problem of each, never the validator's dump (which echoes input and links docs)."""
    issues = [
        FieldIssue(".".join(str(p) for p in e["loc"]) or "arguments", _problem(e), str(e["type"]))
        # The context carries a bound's figure ("at most 200 characters"); the input stays out.
        for e in exc.errors(include_url=False, include_input=False)
    ]
    names = ", ".join(sorted({i.field for i in issues}))
    return ValidationFailed(
        f"invalid arguments: {names}",
        code="invalid_arguments",
        hint=f"fix {names} as `fields` says and call `{tool}` again; its inputSchema in tools/list "
        "gives each argument's type and limits",
        errors=issues,
    )


def unknown_arguments(tool: str, unknown: set[str], accepted: set[str]) -> ValidationFailed:
    """Arguments the tool does not take, refused rather than dropped: a mistyped `org` would
    otherwise act in the personal context, and a mistyped filter return everything."""
    names = ", ".join(f"`{n}`" for n in sorted(unknown))
    takes = ", ".join(f"`{n}`" for n in sorted(accepted)) or "no arguments"
    return ValidationFailed(
        f"not arguments of {tool}: {', '.join(sorted(unknown))}",
        code="invalid_arguments",
        hint=f"remove {names} and call `{tool}` again; it takes {takes}",
        errors=[FieldIssue(n, "not an argument of this tool", "extra_forbidden") for n in sorted(unknown)],
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
    if error["type"] == "extra_forbidden":
        return "not an argument of this tool"
    return issue_message(error)


def _guarded(name: str, toolset: Toolset, fn: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R]]:
    """Domain errors become `isError` results carrying code and hint; anything else is logged
    with the trace id and reported without internals."""

    declared = declared_result(fn)
    span_name = f"tool {name}"
    # A span per call when spans are recorded (inside the MCP SDK's `tools/call` span): it
    # names the tool and toolset and, once known, the context kind; never arguments or tokens.
    attributes = {"gen_ai.tool.name": name, "atlilith.toolset": toolset.name}

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        started = time.perf_counter()
        with step(span_name, attributes=attributes, tool=name, component=toolset.name, action=name):
            outcome = "ok"
            token = _calling.set(toolset)
            try:
                _plain_text(name, {k: v for k, v in kwargs.items() if k != "mcp_context"})
                return compact(await fn(*args, **kwargs), declared)
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
