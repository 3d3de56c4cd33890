"""Rows as answers: an output model filled from a row's attributes of the same names.

An output schema names its fields once; a presenter says only what it derives (a renamed column,
a nested reference, a value hidden from some callers), so a column added to both the row and the
schema needs no presenter change.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

__all__ = ["context_kind", "from_row"]

M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: object, **derived: Any) -> M:
    """`model` validated from `row`'s attributes named as its fields, with `derived` for the
    fields the row does not hold as they are (a field missing from both is an AttributeError:
    a presenter never fills a field by accident)."""
    values = {name: getattr(row, name) for name in model.model_fields if name not in derived}
    return model.model_validate({**values, **derived})


def context_kind(org_id: uuid.UUID | None) -> Literal["personal", "org"]:
    """The kind of context a row belongs to: an org's, or the person's own (no org)."""
    return "org" if org_id is not None else "personal"
