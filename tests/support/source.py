"""Parsing the project's own source in tests."""

from __future__ import annotations

import ast
from pathlib import Path


def parse(path: Path) -> ast.Module:
    """`ast.parse`, retried: CPython 3.11 can raise a spurious SystemError ("AST constructor
    recursion depth mismatch", python/cpython#106905) deep inside a long test session; the same
    source parses on the next try."""
    source = path.read_text()
    for _ in range(2):
        try:
            return ast.parse(source)
        except SystemError:
            continue
    return ast.parse(source)
