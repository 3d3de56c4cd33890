"""What a REST route needs: the database, the caller's credential, the context to act in."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, ParamSpec, TypeVar

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.security import HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param
from pydantic import BaseModel
from starlette._utils import get_route_path
from starlette.datastructures import URLPath
from starlette.routing import BaseRoute, Match, Mount, NoMatchFound, Route
from starlette.types import Receive, Scope, Send

from core import audit
from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.observability import annotate, current_trace_id
from core.opener import PERSONAL as PERSONAL  # re-exported: routes name the personal context by it
from core.opener import Operation, call_in, open_context
from core.pagination import DEFAULT_LIMIT, MAX_LIMIT, PageRequest
from core.preconditions import etag
from core.uow import Database, UnitOfWork
from core.validation import TEXT_HINT, text_issues

Handler = Callable[[Request], Coroutine[Any, Any, Response]]


class CheckedRoute(APIRoute):
    """Every route of the app (`servers.app` makes it the app's route class, `FeatureRouter`
    its routers'): each query parameter, typed or not, gets the input models' text check
    before the body is read and the route's dependencies run. PostgreSQL text cannot hold NUL,
    and a `?q=` must be a 422 naming `q`, never a 500. As an app-wide dependency the check cost
    every request a level of FastAPI's dependency solving (about 8 % of the framework's CPU of
    `GET /v1/me`) though most requests carry no query at all.

    A platform admin route (under /v1/admin/, whichever feature serves it) refuses invalid
    input only to a platform admin: anyone else is told 403 `platform_admin_required` (or 401),
    not the fields the route takes. FastAPI validates the body before the operation's own
    check can run; checking first, as a dependency, would read the admin flag twice on every
    admin request, when only a refused one needs it read here."""

    _literal: str | None = None

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        # FastAPI matches a request against each route of the router it tries, and again inside
        # the one it picks, through its scope bookkeeping and the route's pattern: a path that
        # does not start with the route's own path up to its first parameter cannot match it.
        # Sound while every router is included without a prefix of its own (see FeatureRouter).
        if self._literal is None:
            self._literal = self.path.partition("{")[0]
        if scope["type"] == "http" and not get_route_path(scope).startswith(self._literal):
            return Match.NONE, {}
        return super().matches(scope)

    def get_route_handler(self) -> Handler:
        handler = super().get_route_handler()
        # The API's operations that take a query: the portal's shell, OAuth's and the health
        # routes read theirs as pages and protocols do, and an operation that takes none (a
        # calendar feed, which calendar apps fetch with cache-busting parameters) ignores it.
        api = self.include_in_schema and self.path.startswith("/v1/")
        names = declared_query(self.dependant) if api else None
        known = names or None
        admin = self.path.startswith(ADMIN_PATHS)

        async def checked(request: Request) -> Response:
            try:
                if request.scope.get("query_string"):
                    refuse_control_characters(request)
                    refuse_unknown_query(request, known)
            except ValidationFailed:
                if admin:
                    await refuse_unless_platform_admin(request)
                raise
            try:
                return await handler(request)
            except RequestValidationError:
                if admin:
                    await refuse_unless_platform_admin(request)
                raise

        return checked


# The platform admin's routes: their input is validated for platform admins only.
ADMIN_PATHS = "/v1/admin/"


async def refuse_unless_platform_admin(request: Request) -> None:
    """Raise what the route's operation would for this caller if they are not a platform admin
    (401 without a live credential, 403 `platform_admin_required` or `missing_scope`)."""
    caller = Caller(_db_of(request), bearer_token(request), request.headers.get("X-Atlilith-Org"))
    async with caller.context(person_level=True) as (ctx, uow):
        await audit.check_platform_admin(ctx, uow, write=request.method not in ("GET", "HEAD"))


def declared_query(dependant: Dependant) -> frozenset[str] | None:
    """The query parameters a route and its dependencies declare (a query model's fields
    included); None when one of its query models takes any name."""
    names: set[str] = set()
    stack = [dependant]
    while stack:
        current = stack.pop()
        stack.extend(current.dependencies)
        for param in current.query_params:
            model = param.field_info.annotation
            if isinstance(model, type) and issubclass(model, BaseModel):
                if model.model_config.get("extra") != "forbid":
                    return None
                names |= {f.alias or name for name, f in model.model_fields.items()}
            else:
                names.add(param.alias)
    return frozenset(names)


def refuse_unknown_query(request: Request, declared: frozenset[str] | None) -> None:
    """A query parameter the operation does not take is refused, not ignored: `?from=` for
    `from_at` would otherwise answer the whole unfiltered list as if it were the filtered one."""
    if declared is None:
        return
    unknown = sorted({name for name in request.query_params if name not in declared})
    if unknown:
        takes = ", ".join(f"`{n}`" for n in sorted(declared))
        raise ValidationFailed(
            f"unknown query parameter: {', '.join(unknown)}",
            hint=f"this operation's query parameters are: {takes}",
            errors=[FieldIssue(name, "unknown query parameter", "extra_forbidden") for name in unknown],
        )


def refuse_control_characters(request: Request) -> None:
    issues = text_issues(request.query_params.multi_items())
    if issues:
        names = ", ".join(sorted({i.field for i in issues}))
        raise ValidationFailed(f"invalid input: {names}", hint=TEXT_HINT, errors=issues)


class FeatureRouter(APIRouter):
    """A feature's router: answers "no match" at once for a path that starts with none of its
    routes' fixed prefixes (`/v1/bookings/` of `/v1/bookings/{id}`). FastAPI tries the routers
    in turn, each route's pattern in each (twice for the one chosen), so without it a request to
    the eleventh router was matched against every route of the ten before it: a tenth of the CPU
    of `GET /v1/me`. Included without a prefix of its own (`servers.app`), a route can only
    match a path starting with its own path up to its first parameter."""

    _prefixes: tuple[int, tuple[str, ...] | None] = (-1, None)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("route_class", CheckedRoute)
        super().__init__(**kwargs)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] in ("http", "websocket"):
            prefixes = self._fixed_prefixes()
            if prefixes is not None and not get_route_path(scope).startswith(prefixes):
                return Match.NONE, {}
        return super().matches(scope)

    def _fixed_prefixes(self) -> tuple[str, ...] | None:
        """Each route's path up to its first parameter; None (no shortcut) when a route has no
        path. Recomputed when routes are added."""
        seen, prefixes = self._prefixes
        if seen != len(self.routes):
            paths: list[Any] = [getattr(route, "path", None) for route in self.routes]
            prefixes = (
                tuple(sorted({p.partition("{")[0] for p in paths}))
                if paths and all(isinstance(p, str) and p for p in paths)
                else None
            )
            self._prefixes = (len(self.routes), prefixes)
        return prefixes


class KnownPaths(BaseRoute):
    """The app's first route: the feature router a method and path were served by, remembered,
    so that the next such request goes straight to it (`_IncludedRouter.handle`, as the app
    router's loop would call it) instead of being matched again against every route before it
    (the MCP and OAuth paths, the app's own routes, each router before its own: about 15 µs of
    a `GET /v1/me`). Remembered only when every route before the router matches by path and
    method alone, which is what the key holds; forgotten when the app's routes change. Other
    requests (MCP, pages, no route at all) are left to the loop, as before."""

    def __init__(self, routes: list[BaseRoute]) -> None:
        self.routes = routes  # the app router's own list, this route first
        self._known: dict[tuple[str, str, str], BaseRoute | None] = {}
        self._count = len(routes)

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http":
            return Match.NONE, {}
        if len(self.routes) != self._count:
            self._known.clear()
            self._count = len(self.routes)
        key = (scope.get("method", ""), scope.get("root_path", ""), scope["path"])
        try:
            router = self._known[key]
        except KeyError:
            if len(self._known) >= KNOWN_PATHS_KEPT:  # a path per id, or scanned at random
                self._known.clear()
            router = self._known[key] = self._router_for(scope)
        if router is None:
            return Match.NONE, {}
        return Match.FULL, {KNOWN_ROUTER: router}

    def _router_for(self, scope: Scope) -> BaseRoute | None:
        """The included router the app router's loop would choose (the first route matching in
        full), if it is one and nothing before it matches by more than the path and method."""
        for route in self.routes:
            if route is self:
                continue
            included = _is_included_router(route)
            if not included and not isinstance(route, Route | Mount):
                return None
            if route.matches(scope)[0] is Match.FULL:
                return route if included else None
        return None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        router: BaseRoute = scope.pop(KNOWN_ROUTER)
        await router.handle(scope, receive, send)

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)


# The scope key `KnownPaths.matches` hands the chosen router to its `handle` under.
KNOWN_ROUTER = "atlilith.known_router"
KNOWN_PATHS_KEPT = 4096


def _is_included_router(route: BaseRoute) -> bool:
    """FastAPI keeps an included router as one route (`_IncludedRouter`) over the original:
    with ours (`FeatureRouter`) it matches by path and method alone."""
    router = getattr(route, "original_router", None)
    return isinstance(router, FeatureRouter) and all(isinstance(r, Route) for r in router.routes)


# Dependencies are `async def` even when they await nothing: FastAPI runs a plain `def`
# dependency in its thread pool, a thread hop on every request for a dictionary lookup.
async def get_db(request: Request) -> Database:
    return _db_of(request)


def _db_of(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


P = ParamSpec("P")
R = TypeVar("R")


class Caller:
    """The bearer credential and the org the request asks for; nothing is trusted until
    `context()` re-reads them from the database inside the request's transaction."""

    def __init__(self, db: Database, token: str | None, org_header: str | None) -> None:
        self.db = db
        self.token = token
        self.org_header = org_header

    @asynccontextmanager
    async def context(
        self, org: str | uuid.UUID | None = None, *, person_level: bool = False, gates: bool = False
    ) -> AsyncIterator[tuple[TenantContext, UnitOfWork]]:
        """Open the request's unit of work bound to the caller's context. `org`: a slug or id
        to act in (routes under /v1/orgs/{slug}), or "personal"; when None, the X-Atlilith-Org
        header, else the credential's own org claim or binding. `person_level`: the operation
        concerns the person whatever the context (sign-out, keys, invitations, own orgs), so
        neither the token's org nor the header applies; a header naming an org is still checked
        (403 `not_a_member` as on every other route), so a mistaken one is never silently dropped.
        `gates`: the operation checks components' installation itself (runs and quotes of
        actions): the context's binding reads what it may use, in the same statement."""
        async with self.db.uow(trace_id=current_trace_id()) as uow:
            asked = org if org is not None else (self.org_header or None)
            ctx = await open_context(uow, self.token, asked, person_level=person_level, gates=gates)
            annotate(**{"atlilith.context.kind": "org" if ctx.org_id else "personal"})
            yield ctx, uow

    async def call(self, operation: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """What most routes do: one core operation in the context the request asks for."""
        return await call_in(self.context(), operation, *args, **kwargs)

    async def call_person_level(self, operation: Operation[P, R], /, *args: P.args, **kwargs: P.kwargs) -> R:
        """`call` for an operation that concerns the person whatever the context (see `context`)."""
        return await call_in(self.context(person_level=True), operation, *args, **kwargs)


class CallerCredential(HTTPBearer):
    """The `Caller` of a route, as one dependency: the bearer scheme itself reads the org
    header and answers the caller. FastAPI solves each dependency level on every request (its
    parameters, cache keys, scopes); a `get_caller` depending on `HTTPBearer` cost two levels.
    As a `SecurityBase`, it still documents the `HTTPBearer` scheme on every operation, and
    its header parameter as before: the OpenAPI document is the same."""

    async def __call__(  # type: ignore[override]  # answers the Caller, not the credentials
        self,
        request: Request,
        x_atlilith_org: Annotated[
            str | None,
            Header(
                description="Act in this org (slug), or `personal`. Default: the token's context.",
                max_length=40,
            ),
        ] = None,
    ) -> Caller:
        bearer = bearer_token(request)
        if bearer is None and self.auto_error:
            raise self.make_not_authenticated_error()
        return Caller(_db_of(request), bearer, x_atlilith_org)


def bearer_token(request: Request) -> str | None:
    # `HTTPBearer.__call__`'s reading of the header, without the pydantic model it wraps the
    # token in (built and validated on every request only to be unwrapped).
    scheme, token = get_authorization_scheme_param(request.headers.get("Authorization"))
    return token if scheme.lower() == "bearer" and token else None


get_caller = CallerCredential(
    auto_error=False,
    scheme_name="HTTPBearer",
    description="An access token (POST /v1/auth/login) or an API key (`atl_...`).",
)


async def page_request(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="Page size.")] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None, Query(max_length=512, description="`next_cursor` from the previous page.")
    ] = None,
) -> PageRequest:
    return PageRequest(limit=limit, cursor=cursor)


CallerDep = Annotated[Caller, Depends(get_caller)]
PageDep = Annotated[PageRequest, Depends(page_request)]
DbDep = Annotated[Database, Depends(get_db)]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retrying with the same key returns the first result instead of acting twice.",
    ),
]
IfMatch = Annotated[
    str | None,
    Header(
        alias="If-Match",
        max_length=1000,
        description="The resource's `ETag` from your last read: the change is refused with 412 "
        "`precondition_failed` (nothing written) if the resource changed since. Omitted: last write wins.",
    ),
]

Shown = TypeVar("Shown", bound=BaseModel)


def tagged(response: Response, shown: Shown, representation: BaseModel | None = None) -> Shown:
    """Set `ETag` from the resource's representation (`shown` itself unless given)."""
    response.headers["ETag"] = etag(shown if representation is None else representation)
    return shown
