"""Refusals as a visitor reads them: plain sentences, each next to the field it is about and
listed once in the summary above the form.

Core and pydantic speak to developers ("Value error, …", "phone: not a phone number", field
names, backticks); the REST and MCP doors pass that on as it is, the pages translate it here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from core.errors import DomainError, FieldIssue, ValidationFailed
from core.validation import CONTROL_CHARACTER, DIRECTION_CONTROL, INVISIBLE_NAME, issue_message

__all__ = ["FormErrors", "form_errors", "invalid", "sentence"]

# Where an issue is shown: the booking form's inputs, by the names core and the input models
# give them (`PublicBookIn`'s own, or `HoldIn`'s `client_*` when core's model refuses).
FORM_FIELDS = {
    "name": "name",
    "client_name": "name",
    "email": "email",
    "client_email": "email",
    "phone": "phone",
    "client_phone": "phone",
    "notes": "notes",
    "client_note": "notes",
}


def sentence(text: str) -> str:
    """Core's wording as a sentence: no backticks, a capital, a full stop."""
    text = text.replace("`", "").strip()
    if not text:
        return text
    text = text[0].upper() + text[1:]
    return text if text.endswith((".", "!", "?")) else text + "."


def _message(error: Any) -> str:
    """pydantic's message for one error, said for the person who typed the value: the wording
    every door uses (`issue_message`), except where that speaks of lengths and code points."""
    kind, ctx = error["type"], error.get("ctx") or {}
    if kind == "string_too_short":
        return "Fill in this field."
    if kind == "string_too_long":
        return f"Use at most {ctx.get('max_length')} characters."
    if kind == CONTROL_CHARACTER:
        return "Remove the invisible control characters from this text."
    # Core names the code point and its position; a visitor did not type it knowingly (it came
    # with a pasted name) and only needs to know to type the name again.
    if kind == DIRECTION_CONTROL:
        return "This name has an invisible character that changes the text direction; please retype it."
    if kind == INVISIBLE_NAME:
        return "This name shows no letters, only invisible characters; please type it in letters or digits."
    return sentence(issue_message(error))


def invalid(exc: ValidationError) -> ValidationFailed:
    """An input model's refusal as core's: one issue per field (`""` for the whole form)."""
    issues = [
        FieldIssue(".".join(str(p) for p in e["loc"]), _message(e), e["type"])
        for e in exc.errors(include_url=False)
    ]
    return ValidationFailed("please check the form", errors=issues)


@dataclass(frozen=True)
class FormErrors:
    """What a form page shows: `summary` (each message once; `field`, when set, is the id of the
    input it links to) and `fields` (the message beside each input)."""

    summary: list[dict[str, str | None]] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def form_errors(error: DomainError | None) -> FormErrors | None:
    if error is None:
        return None
    shown = FormErrors()
    seen: set[str] = set()
    for issue in error.errors:
        text = sentence(issue.message)
        target = FORM_FIELDS.get(issue.field)
        if target:
            shown.fields.setdefault(target, text)
        if text not in seen:
            seen.add(text)
            shown.summary.append({"text": text, "field": target})
    if not shown.summary:
        shown.summary.append({"text": sentence(error.message), "field": None})
    return shown
