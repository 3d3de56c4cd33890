"""Property filters: one model, a compact text form for agents, and the SQL they compile to.

Text form (what MCP tools take, and REST accepts beside objects):
    plan = pro          plan != pro         path ~ /pricing      (contains, case-insensitive)
    plan in [pro, team] coupon exists       coupon not exists
    amount > 100        amount >= 100       amount < 5           amount <= 5
Values are JSON when they parse as JSON (`42`, `true`, `"two words"`), else bare text.

Semantics: `=`/`in` match a property equal to the value as JSON or as text (so `zip = 75001`
matches both 75001 and "75001"); `!=` also matches events without the property; numeric
comparisons match numbers and numeric strings only; `~` compares text forms, case-insensitive.
`$source` names the event's source, as the breakdown does (text: every operator but the numeric
comparisons; every event has one); `$member` is a breakdown only.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator

from core.analytics.policy import MEMBER, SOURCE
from core.errors import FieldIssue, ValidationFailed
from core.validation import Input, issue_message

Op = Literal["eq", "neq", "contains", "in", "exists", "not_exists", "gt", "gte", "lt", "lte"]
Scalar = str | int | float | bool | None
_SYMBOLS = {
    "=": "eq",
    "==": "eq",
    "!=": "neq",
    "~": "contains",
    ">": "gt",
    ">=": "gte",
    "<": "lt",
    "<=": "lte",
}
_TEXT = {v: k for k, v in _SYMBOLS.items() if k != "=="}
_KEY = re.compile(r"^[^\s=!<>~\[\]]{1,100}$")
_EXPR = re.compile(r"^\s*(?P<key>[^\s=!<>~]+)\s*(?P<rest>.*?)\s*$", re.DOTALL)
NUMERIC = (
    "CASE WHEN jsonb_typeof(properties -> {k}) = 'number' THEN (properties ->> {k})::numeric"
    " WHEN jsonb_typeof(properties -> {k}) = 'string' AND (properties ->> {k}) ~ '^-?[0-9]+(\\.[0-9]+)?$'"
    " THEN (properties ->> {k})::numeric END"
)


class PropertyFilter(Input):
    property: str = Field(min_length=1, max_length=100, description="A top-level property key.")
    op: Op = Field(description="eq, neq, contains, in, exists, not_exists, gt, gte, lt, lte.")
    value: Scalar | list[str | int | float | bool] = Field(
        default=None, description="A scalar; a list for `in`; a number for gt/gte/lt/lte; none for exists."
    )

    @model_validator(mode="after")
    def _value_fits_op(self) -> PropertyFilter:
        if not _KEY.match(self.property):
            raise ValueError("property keys have no spaces or operator characters")
        v, op = self.value, self.op
        if self.property == MEMBER:
            raise ValueError("`$member` is not a filter: break down by `$member` to see each member")
        if self.property == SOURCE and op in ("gt", "gte", "lt", "lte"):
            raise ValueError("`$source` is text: compare it with =, !=, ~ or in")
        if any(isinstance(x, float) and not math.isfinite(x) for x in (v if isinstance(v, list) else [v])):
            # No property holds one (events are stored as JSON), and SQL would choke on it.
            raise ValueError("numbers must be finite: not NaN, Infinity, or beyond a double (1e999)")
        if op in ("exists", "not_exists"):
            if v is not None:
                raise ValueError(f"`{op}` takes no value")
        elif op == "in":
            if not isinstance(v, list) or not 1 <= len(v) <= 100:
                raise ValueError("`in` takes a list of 1 to 100 values")
        elif op in ("gt", "gte", "lt", "lte"):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise ValueError(f"`{op}` compares numbers: give a number")
        elif op == "contains":
            if not isinstance(v, str) or not v:
                raise ValueError("`contains` takes a non-empty text")
        elif isinstance(v, list):
            raise ValueError(f"`{op}` takes one value; use `in` for several")
        return self

    def text(self) -> str:
        """The canonical text form, echoed back so an agent can quote what was applied."""
        if self.op == "exists":
            return f"{self.property} exists"
        if self.op == "not_exists":
            return f"{self.property} not exists"
        if self.op == "in":
            return f"{self.property} in {json.dumps(self.value, ensure_ascii=False)}"
        return f"{self.property} {_TEXT[self.op]} {json.dumps(self.value, ensure_ascii=False)}"


def _scalar(raw: str) -> Any:
    raw = raw.strip()
    try:
        return json.loads(raw)
    except ValueError:
        return raw


def parse_text(expr: str) -> PropertyFilter:
    """`plan = pro` -> PropertyFilter(property="plan", op="eq", value="pro")."""
    match = _EXPR.match(expr)
    if not match:
        raise ValueError("expected `<property> <operator> <value>`")
    key, rest = match.group("key"), match.group("rest")
    lowered = rest.lower()
    if lowered == "exists":
        return PropertyFilter(property=key, op="exists")
    if lowered in ("not exists", "!exists"):
        return PropertyFilter(property=key, op="not_exists")
    if lowered.startswith("in ") or lowered.startswith("in["):
        body = rest[2:].strip()
        values: Any = None
        if body.startswith("["):
            try:
                values = json.loads(body)
            except ValueError:
                # `[pro, team]` is not JSON: read it as a comma list
                values = [_scalar(p) for p in body.strip("[]").split(",") if p.strip()]
        else:
            values = [_scalar(p) for p in body.split(",") if p.strip()]
        if not isinstance(values, list):
            raise ValueError("`in` takes a list: `plan in [pro, team]`")
        return PropertyFilter(property=key, op="in", value=values)
    for symbol in (">=", "<=", "!=", "==", "=", ">", "<", "~"):
        if rest.startswith(symbol):
            value = rest[len(symbol) :].strip()
            if not value:
                raise ValueError(f"`{symbol}` needs a value")
            op = _SYMBOLS[symbol]
            parsed = value if op == "contains" and not value.startswith('"') else _scalar(value)
            return PropertyFilter(property=key, op=op, value=parsed)
    raise ValueError("unknown operator: use = != ~ in exists > >= < <=")


def parse_filters(
    raw: Sequence[str | PropertyFilter | dict[str, Any]] | None, field: str = "filters"
) -> list[PropertyFilter]:
    """Objects or text expressions -> filters, or one 422 listing every bad one."""
    parsed: list[PropertyFilter] = []
    issues: list[FieldIssue] = []
    for i, item in enumerate(raw or []):
        try:
            if isinstance(item, PropertyFilter):
                parsed.append(item)
            elif isinstance(item, str):
                parsed.append(parse_text(item))
            else:
                parsed.append(PropertyFilter.model_validate(item))
        except ValidationError as exc:
            issues.append(FieldIssue(f"{field}.{i}", "; ".join(_messages(exc)), "invalid_filter"))
        except ValueError as exc:
            issues.append(FieldIssue(f"{field}.{i}", str(exc), "invalid_filter"))
    if issues:
        raise ValidationFailed(
            "invalid property filter: " + "; ".join(f"{i.field}: {i.message}" for i in issues),
            code="invalid_filter",
            hint="write filters as `plan = pro`, `amount >= 10`, `plan in [pro, team]`, `coupon exists`",
            errors=issues,
        )
    if len(parsed) > 20:
        raise ValidationFailed(
            "at most 20 filters", code="invalid_filter", hint="combine values with `in`", errors=[]
        )
    return parsed


def _messages(exc: ValidationError) -> list[str]:
    return [issue_message(e) for e in exc.errors()]


def _text_of(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def compile_filters(filters: list[PropertyFilter], prefix: str) -> tuple[str, dict[str, Any]]:
    """AND of the filters as SQL over `properties`, with bound parameters named `<prefix>_*`.
    Only constants go into the SQL text; keys and values are always bound."""
    clauses: list[str] = []
    params: dict[str, Any] = {}
    for i, f in enumerate(filters):
        p = f"{prefix}_{i}"
        k = f"CAST(:{p}_k AS text)"
        if f.property == SOURCE:
            # The column the `$source` breakdown reads, as the JSON string it would be as a property.
            as_json, as_text, present = "to_jsonb(source)", "source", "true"
        else:
            params[f"{p}_k"] = f.property
            as_json, as_text, present = f"(properties -> {k})", f"(properties ->> {k})", f"(properties ? {k})"
        if f.op in ("eq", "neq"):
            params[f"{p}_t"] = _text_of(f.value)
            # A text value equals as JSON exactly when it equals as text: one comparison.
            eq = f"({as_text} = CAST(:{p}_t AS text))"
            if not isinstance(f.value, str):
                params[f"{p}_j"] = json.dumps(f.value)
                eq = f"({as_json} = CAST(:{p}_j AS jsonb) OR {eq})"
            clauses.append(eq if f.op == "eq" else f"NOT coalesce({eq}, false)")
        elif f.op == "in":
            values = f.value if isinstance(f.value, list) else [f.value]
            params[f"{p}_t"] = [_text_of(v) for v in values]
            in_ = f"({as_text} = ANY(CAST(:{p}_t AS text[])))"
            if not all(isinstance(v, str) for v in values):
                params[f"{p}_j"] = [json.dumps(v) for v in values]
                in_ = f"({as_json} = ANY(CAST(:{p}_j AS jsonb[])) OR {in_})"
            clauses.append(in_)
        elif f.op == "contains":
            params[f"{p}_t"] = str(f.value).lower()
            clauses.append(f"strpos(lower({as_text}), CAST(:{p}_t AS text)) > 0")
        elif f.op == "exists":
            clauses.append(present)
        elif f.op == "not_exists":
            clauses.append(f"NOT {present}")
        else:
            symbol = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}[f.op]
            params[f"{p}_n"] = str(f.value)
            clauses.append(f"({NUMERIC.format(k=k)} {symbol} CAST(:{p}_n AS numeric))")
    return (" AND ".join(clauses) or "true"), params
