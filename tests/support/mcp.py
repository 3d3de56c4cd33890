"""Reading MCP tool results the way a validating client (the TypeScript SDK) does."""

from __future__ import annotations

import json
from typing import Any


def tool_error(result: Any) -> dict[str, Any]:
    """The error object of an `isError` result: no structured content (a validating client
    would check it against the success schema), one text block holding one JSON object."""
    assert result.is_error, result
    assert result.structured_content is None, result.structured_content
    assert len(result.content) == 1, result.content
    body = json.loads(result.content[0].text)
    assert isinstance(body, dict) and isinstance(body["code"], str) and isinstance(body["message"], str)
    assert isinstance(body.get("hint", ""), str)
    for issue in body.get("fields", []):
        assert set(issue) == {"path", "problem"}, issue
    return body
