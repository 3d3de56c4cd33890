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

    def __init_subclass__(
        cls, *, status: int | None = None, code: str | None = None, title: str | None = None, **kwargs: Any
    ) -> None:
        # A kind of error is one line: its status, default code and problem title.
        super().__init_subclass__(**kwargs)
        if status is not None:
            cls.status = status
        if code is not None:
            cls.default_code = code
        if title is not None:
            cls.title = title

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


class ValidationFailed(DomainError, status=422, code="validation_failed", title="Validation failed"):
    """The input breaks a rule of its schema or of the domain."""


class Unauthenticated(DomainError, status=401, code="unauthenticated", title="Unauthenticated"):
    """No credential, or one that is not (or no longer) valid."""


class PermissionDenied(DomainError, status=403, code="forbidden", title="Forbidden"):
    """The caller is known but may not do this here."""


class NotFound(DomainError, status=404, code="not_found", title="Not found"):
    """Missing, or another tenant's (the two are indistinguishable)."""


class Conflict(DomainError, status=409, code="conflict", title="Conflict"):
    """The state does not allow it now (a duplicate, a taken slot, a race lost)."""


class Gone(DomainError, status=410, code="gone", title="Gone"):
    """It existed and has ended (an expired invitation or link)."""


class PayloadTooLarge(DomainError, status=413, code="payload_too_large", title="Payload too large"):
    """The body is over the size the platform accepts."""


class RateLimited(DomainError, status=429, code="rate_limited", title="Too many requests"):
    """Too many requests for now; retry after the hint."""


class Unavailable(DomainError, status=503, code="unavailable", title="Service unavailable"):
    """A dependency is down; retrying later may succeed."""


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
