"""Argument handling shared by the tool modules (beside `tools.base`, which serves them)."""

from __future__ import annotations

import json
from typing import Any

from core.errors import FieldIssue, ValidationFailed

__all__ = ["json_object_argument"]


def json_object_argument(raw: str, argument: str, *, code: str, example: str) -> dict[str, Any]:
    """A JSON object an agent passes as text; blank text is the empty object. Such arguments
    are plain `str` because the SDK would otherwise pre-parse JSON text itself, into anything."""
    try:
        value: Any = json.loads(raw) if raw.strip() else {}
    except ValueError as exc:
        raise _refused(argument, code, example, "is not valid JSON", str(exc)) from exc
    if not isinstance(value, dict):
        raise _refused(argument, code, example, "must be a JSON object", "not a JSON object")
    return value


def _refused(argument: str, code: str, example: str, problem: str, detail: str) -> ValidationFailed:
    return ValidationFailed(
        f"`{argument}` {problem}",
        code=code,
        hint=f"pass a JSON object as text, e.g. {example}",
        errors=[FieldIssue(argument, detail)],
    )
