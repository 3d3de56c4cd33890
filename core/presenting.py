"""Rows as answers: an output model filled from a row's attributes of the same names.

An output schema names its fields once; a presenter says only what it derives (a renamed column,
a nested reference, a value hidden from some callers), so a column added to both the row and the
schema needs no presenter change.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from functools import cache
from operator import attrgetter
from typing import Any, Literal, TypeVar

from pydantic import BaseModel

__all__ = ["context_kind", "from_row"]

M = TypeVar("M", bound=BaseModel)


def from_row(model: type[M], row: object, **derived: Any) -> M:
    """`model` validated from `row`'s attributes named as its fields, with `derived` for the
    fields the row does not hold as they are (a field missing from both is an AttributeError:
    a presenter never fills a field by accident)."""
    names, read = _reader(model, frozenset(derived))
    values = dict(zip(names, read(row), strict=True))
    values.update(derived)
    return model.model_validate(values)


@cache
def _reader(
    model: type[BaseModel], derived: frozenset[str]
) -> tuple[tuple[str, ...], Callable[[object], tuple[Any, ...]]]:
    # Once per presenter: `model_fields` builds its answer on every access, and one C-level
    # getter reads every attribute, so a list of rows costs little more than the validation.
    names = tuple(name for name in model.model_fields if name not in derived)
    if len(names) == 1:
        return names, lambda row: (getattr(row, names[0]),)
    return names, attrgetter(*names) if names else (lambda row: ())


def context_kind(org_id: uuid.UUID | None) -> Literal["personal", "org"]:
    """The kind of context a row belongs to: an org's, or the person's own (no org)."""
    return "org" if org_id is not None else "personal"
