"""Every input model refuses NUL and other control characters in every field, at any depth,
so the next text field cannot forget (PostgreSQL text cannot hold NUL: it was a 500)."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

import core
from core.validation import Input, check_text

NUL = "a\x00b"
CANDIDATES: list[Any] = [NUL, [NUL], {"k": NUL}, {"k\x00": "v"}, {"k": [{"deep": "x\x01"}]}]


def _input_models() -> list[type[BaseModel]]:
    for mod in pkgutil.walk_packages(core.__path__, "core."):
        importlib.import_module(mod.name)
    found: dict[str, type[BaseModel]] = {}
    stack: list[type[BaseModel]] = [BaseModel]
    while stack:
        for sub in stack.pop().__subclasses__():
            stack.append(sub)
            if sub.__module__.startswith("core.") and sub.__module__ != "core.config":
                found[f"{sub.__module__}.{sub.__qualname__}"] = sub
    return sorted(found.values(), key=lambda m: f"{m.__module__}.{m.__qualname__}")


def _looks_like_input(model: type[BaseModel]) -> bool:
    name = model.__name__.lstrip("_")
    return model.model_config.get("extra") == "forbid" or name.endswith(("In", "Query", "Filters", "Update"))


MODELS = [m for m in _input_models() if _looks_like_input(m)]


def test_every_input_model_is_an_input() -> None:
    assert len(MODELS) > 40
    strays = [f"{m.__module__}.{m.__qualname__}" for m in MODELS if not issubclass(m, Input)]
    assert strays == [], "input models must subclass core.validation.Input"


@pytest.mark.parametrize("model", MODELS, ids=lambda m: f"{m.__module__}.{m.__qualname__}")
def test_no_field_of_any_input_model_takes_a_control_character(model: type[BaseModel]) -> None:
    for name, info in model.model_fields.items():
        key = info.alias or name
        for value in CANDIDATES:
            try:
                model.model_validate({key: value})
            except ValidationError as exc:
                assert any(e["loc"][:1] == (key,) for e in exc.errors()), (name, value, exc.errors())
            else:
                pytest.fail(f"{model.__qualname__}.{name} took {value!r}")


def test_text_keeps_tabs_and_line_breaks_and_refuses_the_rest() -> None:
    assert check_text("one\ttwo\r\nthree") == "one\ttwo\r\nthree"
    for bad in ("\x00", "\x07", "\x1b[31m", "\ud800"):
        with pytest.raises(ValueError, match="control character"):
            check_text(f"x{bad}")
