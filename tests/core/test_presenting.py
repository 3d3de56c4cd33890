"""core.presenting: an output model from a row's same-named attributes, and the 404 of a row
the caller's context does not hold (core.scoping.not_in_context)."""

from __future__ import annotations

import uuid
from types import SimpleNamespace

import pytest
from pydantic import BaseModel

from core.errors import FieldIssue
from core.presenting import context_kind, from_row
from core.scoping import not_in_context


class _Out(BaseModel):
    id: uuid.UUID
    name: str
    shown: str


class _One(BaseModel):
    name: str


def test_a_row_fills_the_fields_it_names_and_derived_values_win() -> None:
    row = SimpleNamespace(id=uuid.uuid4(), name="Cocotte", shown="raw", extra="not a field")
    out = from_row(_Out, row, shown="derived")
    assert out == _Out(id=row.id, name="Cocotte", shown="derived")
    # The same presenter again (its reader is cached) and with other derived names.
    assert from_row(_Out, row) == _Out(id=row.id, name="Cocotte", shown="raw")
    assert from_row(_One, row) == _One(name="Cocotte")
    assert from_row(_One, object(), name="given") == _One(name="given")


def test_a_field_neither_the_row_nor_the_presenter_gives_is_an_error() -> None:
    with pytest.raises(AttributeError, match="shown"):
        from_row(_Out, SimpleNamespace(id=uuid.uuid4(), name="x"))


def test_context_kind() -> None:
    assert context_kind(None) == "personal"
    assert context_kind(uuid.uuid4()) == "org"


def test_not_in_context_names_the_noun_in_message_and_code() -> None:
    issue = FieldIssue("client_id", "unknown client", "not_found")
    error = not_in_context("client", "list clients", issue)
    assert (error.status, error.message, error.code, error.hint, error.errors) == (
        404,
        "no such client in this context",
        "client_not_found",
        "list clients",
        [issue],
    )
    assert not_in_context("brand", "list brands").errors == []
