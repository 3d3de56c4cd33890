"""The argument helpers the tool modules share."""

from __future__ import annotations

import pytest

from core.errors import ValidationFailed
from tools.common import json_object_argument


def test_a_json_object_argument_is_parsed_and_blank_is_empty() -> None:
    assert json_object_argument('{"plan": "pro"}', "properties", code="c", example="{}") == {"plan": "pro"}
    assert json_object_argument("  ", "properties", code="c", example="{}") == {}


@pytest.mark.parametrize(
    ("raw", "problem"), [("{nope", "is not valid JSON"), ("[1]", "must be a JSON object"), ("3", "must be")]
)
def test_anything_but_a_json_object_is_refused_with_the_callers_code(raw: str, problem: str) -> None:
    with pytest.raises(ValidationFailed) as caught:
        json_object_argument(raw, "config", code="invalid_config", example='{"locale": "fr"}')
    err = caught.value
    assert err.code == "invalid_config" and problem in err.message
    assert [e.field for e in err.errors] == ["config"]
    assert err.hint is not None and '{"locale": "fr"}' in str(err.hint)
