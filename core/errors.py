"""Domain errors: a stable code, an HTTP status, a message and a hint the caller can act on.

Transports map them: REST to RFC 9457 problem+json, MCP to an `isError` tool result carrying the
same code and hint. Nothing here ever contains SQL, stack traces or another tenant's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class FieldIssue:
    field: str
    message: str
    code: str = "invalid"

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message, "code": self.code}


@dataclass(eq=False)
class DomainError(Exception):
    """Base of every error a caller may see. Subclasses fix the status and a default code."""

    message: str
    code: str = ""
    hint: str | None = None
    errors: list[FieldIssue] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    status: ClassVar[int] = 400
    default_code: ClassVar[str] = "bad_request"
    title: ClassVar[str] = "Bad request"

    def __post_init__(self) -> None:
        if not self.code:
            self.code = self.default_code
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        if self.errors:
            body["errors"] = [e.as_dict() for e in self.errors]
        body.update(self.extra)
        return body


class ValidationFailed(DomainError):
    status = 422
    default_code = "validation_failed"
    title = "Validation failed"


class Unauthenticated(DomainError):
    status = 401
    default_code = "unauthenticated"
    title = "Unauthenticated"


class PermissionDenied(DomainError):
    status = 403
    default_code = "forbidden"
    title = "Forbidden"


class NotFound(DomainError):
    status = 404
    default_code = "not_found"
    title = "Not found"


class Conflict(DomainError):
    status = 409
    default_code = "conflict"
    title = "Conflict"


class Gone(DomainError):
    status = 410
    default_code = "gone"
    title = "Gone"


class PayloadTooLarge(DomainError):
    status = 413
    default_code = "payload_too_large"
    title = "Payload too large"


class RateLimited(DomainError):
    status = 429
    default_code = "rate_limited"
    title = "Too many requests"


class Unavailable(DomainError):
    status = 503
    default_code = "unavailable"
    title = "Service unavailable"


# Constraint name -> the error a violation of it means. Features register theirs next to their
# models, so a race that slips past a read-then-write check still gets a precise 409, not a 500.
_CONSTRAINT_ERRORS: dict[str, DomainError] = {}


def constraint_error(name: str, error: DomainError) -> None:
    _CONSTRAINT_ERRORS[name] = error


def error_for_constraint(name: str | None) -> DomainError | None:
    if name is None:
        return None
    template = _CONSTRAINT_ERRORS.get(name)
    if template is None:
        return None
    return type(template)(
        message=template.message,
        code=template.code,
        hint=template.hint,
        errors=list(template.errors),
        extra=dict(template.extra),
    )
