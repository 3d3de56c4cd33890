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


def input_error(exc: ValidationError, prefix: str = "input") -> ValidationFailed:
    issues = [
        FieldIssue(".".join([prefix, *(str(p) for p in e["loc"])]), str(e["msg"]), str(e["type"]))
        for e in exc.errors()
    ]
    return ValidationFailed(
        "invalid input: " + ", ".join(sorted({i.field for i in issues})),
        hint="the action's input schema is in [[billing.list_actions]]",
        errors=issues,
    )
