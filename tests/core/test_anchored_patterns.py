"""Patterns are matched against the whole value: Python's `$` also matches before a trailing
newline, so `re.match("^x$", "x\n")` succeeds. Every validator uses `fullmatch`."""

from __future__ import annotations

import pytest

from core.analytics import parsing
from core.credentials import parse_api_key
from core.errors import ValidationFailed
from core.idempotency import check_key
from core.messaging.schemas import _http_url


def test_a_trailing_newline_is_not_part_of_a_valid_value() -> None:
    assert check_key("retry-1") == "retry-1"
    with pytest.raises(ValidationFailed):
        check_key("retry-1\n")
    assert _http_url("https://example.com/hook") == "https://example.com/hook"
    with pytest.raises(ValueError):
        _http_url("https://example.com/hook\n")
    token = "atl_abcd1234_" + "s" * 40
    assert parse_api_key(token) is not None and parse_api_key(token + "\n") is None
    assert parsing.NAME_RE.fullmatch("page_view") and not parsing.NAME_RE.fullmatch("page_view\n")
