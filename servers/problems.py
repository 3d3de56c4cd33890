"""RFC 9457 problem+json for every error the REST door returns."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.db_errors import connection_lost, transaction_conflict, translate_db_error
from core.errors import DomainError, FieldIssue, ValidationFailed
from core.observability import current_trace_id, get_logger
from core.validation import issue_message
from servers.hints import DOOR_HEADER, for_rest
from servers.portal import PUBLIC_PREFIXES, shell, wants_a_page
from servers.public.render import not_found as public_not_found

log = get_logger("atlilith.http")
PROBLEM_TYPE = "https://atlilith.dev/problems/"


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    hint: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE + code,
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if hint:
        body["hint"] = hint
    if errors:
        body["errors"] = errors
    if extra:
        body.update({k: v for k, v in extra.items() if k not in body})
    body["trace_id"] = current_trace_id()
    return JSONResponse(body, status_code=status, media_type="application/problem+json", headers=headers)


# What to do about the router's own refusals (an address or method no route serves).
_HTTP_HINTS = {
    404: "check the path against the API reference (/docs, /openapi.json)",
    405: "the route exists with other methods: the `Allow` header lists them",
}


def domain_problem(err: DomainError, *, cli: bool = False) -> JSONResponse:
    headers: dict[str, str] = {}
    if err.status == 401:
        # No credential at all carries no error code (RFC 6750, 3.1); a refused one says why.
        refused = err.code != "missing_credential"
        headers["WWW-Authenticate"] = (
            f'Bearer error="invalid_token", error_description="{err.code}"' if refused else "Bearer"
        )
    if "retry_after" in err.extra:
        headers["Retry-After"] = str(err.extra["retry_after"])
    return problem_response(
        err.status,
        err.code,
        err.title,
        err.message,
        hint=for_rest(err.hint, cli=cli),
        errors=[e.as_dict() for e in err.errors] or None,
        extra=err.extra,
        headers=headers or None,
    )


def _field_name(loc: tuple[Any, ...]) -> tuple[str, str]:
    where = str(loc[0]) if loc else "body"
    rest = (
        [str(p) for p in loc[1:]]
        if where in {"body", "query", "path", "header", "cookie"}
        else list(map(str, loc))
    )
    return ".".join(rest) or where, where


def validation_problem(exc: RequestValidationError | ValidationError) -> JSONResponse:
    errors: list[dict[str, Any]] = []
    malformed = False
    # A model built inside a route or in core (filters, a manage link's slot query) fails as a
    # plain ValidationError: the same 422, its locations being the request's own field names.
    inner = isinstance(exc, ValidationError)
    found: Sequence[Any] = exc.errors(include_url=False) if isinstance(exc, ValidationError) else exc.errors()
    for err in found:
        kind = str(err.get("type", "invalid"))
        loc = tuple(err.get("loc", ()))
        field, where = (".".join(map(str, loc)) or "request", "request") if inner else _field_name(loc)
        message = issue_message(err)
        if kind == "json_invalid":
            malformed = True
            # Its location is a character offset in the body, not a field.
            at = loc[1] if len(loc) > 1 else None
            reason = str((err.get("ctx") or {}).get("error", "not valid JSON")).lower()
            field, message = "body", f"{reason} at character {at}" if isinstance(at, int) else reason
        if kind == "extra_forbidden":
            message = "unknown field"
        errors.append({**FieldIssue(field, message, kind).as_dict(), "in": where})
    if malformed:
        return problem_response(
            400,
            "malformed_json",
            "Malformed JSON",
            "the request body is not valid JSON",
            hint="send a JSON document with Content-Type: application/json",
            errors=errors,
        )
    fields = ", ".join(sorted({e["field"] for e in errors}))
    return problem_response(
        422,
        ValidationFailed.default_code,
        ValidationFailed.title,
        f"invalid input: {fields}",
        hint="fix the fields listed in `errors` and retry",
        errors=errors,
    )


def _not_json(request: Request, exc: RequestValidationError) -> bool:
    """A body FastAPI did not read as JSON because its content type is not JSON's: whatever it
    then says of the body ("not a valid dictionary", a union's every branch) is about the
    header. A missing body stays a field issue (`body: required`)."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "application/json" or kind.endswith("+json"):
        return False
    return any(e.get("loc", ("",))[0] == "body" and e.get("type") != "missing" for e in exc.errors())


# What FastAPI says of a JSON body it could not even decode as text (not UTF-8, compressed).
_UNREADABLE_BODY = "There was an error parsing the body"


def _unreadable_body(request: Request) -> JSONResponse:
    encoding = request.headers.get("content-encoding", "").strip()
    said = f"a body sent with Content-Encoding: {encoding}" if encoding else "a body that is not UTF-8 text"
    return problem_response(
        400,
        "malformed_body",
        "Malformed body",
        f"{said} could not be read as JSON",
        hint="send the body as plain UTF-8 JSON"
        + (", uncompressed (no Content-Encoding)" if encoding else "")
        + ", with Content-Type: application/json",
    )


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(request: Request, exc: DomainError) -> JSONResponse:
        return domain_problem(exc, cli=request.headers.get(DOOR_HEADER) == "cli")

    async def _database(request: Request, exc: Exception) -> JSONResponse:
        # A unit of work translates what fails inside it; this is the net for a statement run
        # outside one. A deadlock, a serialization failure or a database that went away is the
        # caller's to retry (503), anything else stays an internal error (the middleware's 500,
        # logged with its trace).
        if transaction_conflict(exc) is None and not connection_lost(exc):
            raise exc
        return domain_problem(translate_db_error(exc), cli=request.headers.get(DOOR_HEADER) == "cli")

    app.add_exception_handler(DBAPIError, _database)
    app.add_exception_handler(asyncpg.PostgresError, _database)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _not_json(request, exc):
            return problem_response(
                415,
                "unsupported_media_type",
                "Unsupported media type",
                f"the body was sent as {request.headers.get('content-type') or 'no content type'}, not JSON",
                hint="send the body as JSON with Content-Type: application/json",
            )
        return validation_problem(exc)

    @app.exception_handler(ValidationError)
    async def _inner_validation(_: Request, exc: ValidationError) -> JSONResponse:
        return validation_problem(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        accept = request.headers.get("accept", "")
        if exc.status_code == 404 and wants_a_page(request.method, request.url.path, accept):
            return shell(404)  # a person who followed a bad link gets the portal's "Page not found"
        if exc.status_code == 404 and "text/html" in accept and request.url.path.startswith(PUBLIC_PREFIXES):
            return public_not_found(request)  # a client's mistyped link: the clients' own page
        if exc.status_code == 400 and exc.detail == _UNREADABLE_BODY:
            return _unreadable_body(request)
        codes = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
        code = codes.get(exc.status_code, "http_error")
        detail = "no such route" if exc.status_code == 404 else str(exc.detail)
        return problem_response(
            exc.status_code,
            code,
            detail.capitalize(),
            detail,
            hint=_HTTP_HINTS.get(exc.status_code),
            headers=dict(exc.headers) if exc.headers else None,
        )
