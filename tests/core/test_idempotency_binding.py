"""`@idempotent_operation` reads a call's arguments without `inspect.Signature.bind` on the
usual calls; whatever the call's shape, it reads what `bind` reads, and refuses what `bind`
refuses, with the same error."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from core.idempotency import _binder


def _operation(ctx: Any, uow: Any, data: Any, extra: int = 3, idempotency_key: str | None = None) -> None: ...


def _keyword_only(ctx: Any, uow: Any, *, data: Any, idempotency_key: str | None = None) -> None: ...


CALLS: list[tuple[tuple[Any, ...], dict[str, Any]]] = [
    (("c", "u", "d"), {}),
    (("c", "u", "d"), {"idempotency_key": "k"}),
    (("c", "u"), {"data": "d", "idempotency_key": None}),
    (("c",), {"uow": "u", "data": "d", "extra": 5}),
    ((), {"idempotency_key": "k", "data": "d", "uow": "u", "ctx": "c"}),
    (("c", "u", "d", 7, "k"), {}),
    # Refused: too many, missing, unexpected, or given twice.
    (("c", "u", "d", 7, "k", "x"), {}),
    (("c", "u"), {}),
    (("c", "u", "d"), {"other": 1}),
    (("c", "u", "d"), {"ctx": "again"}),
]


def _expected(signature: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        bound = signature.bind(*args, **kwargs)
    except TypeError as e:
        return ("refused", str(e))
    bound.apply_defaults()
    return dict(bound.arguments)


@pytest.mark.parametrize("fn", [_operation, _keyword_only])
@pytest.mark.parametrize(("args", "kwargs"), CALLS)
def test_arguments_are_read_as_bind_reads_them(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> None:
    signature = inspect.signature(fn)
    try:
        got: Any = _binder(signature)(args, dict(kwargs))
    except TypeError as e:
        got = ("refused", str(e))
    expected = _expected(signature, args, kwargs)
    assert got == expected
    if isinstance(got, dict):
        assert list(got) == list(expected)
