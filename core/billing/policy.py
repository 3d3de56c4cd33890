"""What every billing operation shares: its scopes, its log and how an invalid input reads."""

from __future__ import annotations

from pydantic import ValidationError

from core.context import register_scopes
from core.errors import FieldIssue, ValidationFailed
from core.observability import get_logger

log = get_logger("atlilith.billing")

JOBS_READ, JOBS_WRITE = "jobs:read", "jobs:write"
CREDITS_READ, CREDITS_WRITE = "credits:read", "credits:write"
register_scopes(
    {
        "jobs:read": "read jobs and quote actions",
        "jobs:write": "run and cancel jobs (spends the context's credits)",
        "credits:read": "read the credit balance and ledger",
        "credits:write": "change credit settings (low-balance threshold)",
    }
)


ACTION_INPUT_HINT = "the action's input schema is in [[billing.list_actions]]"
# A synchronous door's arguments are the action's input as the caller wrote them.
OWN_FIELDS_HINT = "correct the fields named in `errors`: each message says what the field needs"
CALLBACK_HINT = (
    'a callback\'s body is {"status": "succeeded", "output": {...}, "usage": {"credits": <int>, '
    '"metrics": {"<name>": <number>}}} or {"status": "failed", "error": {"code": "...", '
    '"message": "..."}} (docs/billing.md, "The component contract")'
)
PURCHASE_HINT = (
    'the event is {"id": "...", "type": "credits.purchased", "data": {"tenant_id": "<person or '
    'org id>", "credits": <int>}} (docs/billing.md, "Purchases")'
)


def input_error(
    exc: ValidationError, prefix: str | None = "input", hint: str = ACTION_INPUT_HINT
) -> ValidationFailed:
    """A 422 naming each invalid field, under `prefix` (None: as the caller named it)."""
    issues = [
        FieldIssue(
            ".".join([*([prefix] if prefix else []), *(str(p) for p in e["loc"])]),
            str(e["msg"]),
            str(e["type"]),
        )
        for e in exc.errors()
    ]
    return ValidationFailed(
        "invalid input: " + ", ".join(sorted({i.field for i in issues})),
        hint=hint,
        errors=issues,
    )
