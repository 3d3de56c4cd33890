"""Reading sent events: the patterns each field must match, and per-item validation that
turns one raw event into a row to store, or into the precise reason it is refused."""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any, NamedTuple, cast

from pydantic_core import to_json

# Ingested names never contain `/`: names with one are the platform's (see mapping.py).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:\-]{0,99}$")
PLATFORM_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*/[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
CLIENT_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:@+\-]{0,127}$")
SOURCE_RE = re.compile(r"^[a-z0-9][a-z0-9_.:\-]{0,63}$")
ID_RE = re.compile(r"^[\x21-\x7e]{1,128}$")
UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
FIELDS = frozenset({"id", "name", "timestamp", "client_id", "properties", "source"})
PLATFORM_SOURCE = "platform"
ID_NAMESPACE = uuid.UUID("6f1d9a52-3c1e-4c8f-9a57-6a0e1f6f2b10")


class Row(NamedTuple):
    """One event ready to store; in the column order of the COPY into the temp table."""

    idx: int
    id: str  # a UUID, as canonical text (cast in SQL: cheaper than parsing it in Python)
    ts: dt.datetime
    name: str
    client_id: str | None
    source: str
    properties: str  # JSON text


@dataclass(frozen=True)
class ItemError:
    index: int
    code: str
    message: str
    field: str | None = None
    id: str | None = None


def event_id(raw: str) -> str:
    """A UUID is kept as is; any other id maps to a stable UUID (v5), so resends still match."""
    if UUID_RE.fullmatch(raw):
        return raw.lower()
    return str(uuid.uuid5(ID_NAMESPACE, raw))


def _content_id(name: str, ts: dt.datetime, client: str | None, source: str, props: str) -> str:
    """Events sent without an id but with a timestamp get an id derived from their content:
    resending the same event dedupes; two events differing in anything do not."""
    return str(uuid.uuid5(ID_NAMESPACE, json.dumps([name, ts.isoformat(), client, source, props])))


class _Refused(Exception):
    """Why a field refuses the event: becomes the item's `ItemError`."""

    def __init__(self, code: str, message: str, field: str) -> None:
        super().__init__(message)
        self.code, self.message, self.field = code, message, field


@dataclass(frozen=True, slots=True)
class Limits:
    """The clock and bounds every event of a batch is checked against."""

    now: dt.datetime
    oldest: dt.datetime
    newest: dt.datetime
    max_props: int
    default_source: str  # of an event that names none


def parse_item(index: int, item: Any, limits: Limits) -> Row | ItemError:
    """One raw event -> a row, or the reason it is refused (never an exception)."""
    if not isinstance(item, dict):
        return ItemError(index, "not_an_object", "each event is a JSON object")
    raw_id = item.get("id")
    shown_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 128 else None
    unknown = set(item) - FIELDS
    if unknown:
        field = sorted(unknown)[0]
        return ItemError(
            index, "unknown_field", f"unknown field {field!r}; fields: {sorted(FIELDS)}", field, shown_id
        )
    ts_raw = item.get("timestamp")
    try:
        name = _name(item.get("name"))
        ts = limits.now if ts_raw is None else _timestamp(ts_raw, limits.oldest, limits.newest)
        client = _client_id(item.get("client_id"))
        source = _source(item.get("source", limits.default_source))
        encoded = _properties(item.get("properties", {}), limits.max_props)
    except _Refused as why:
        return ItemError(index, why.code, why.message, why.field, shown_id)
    if raw_id is None:
        eid = _content_id(name, ts, client, source, encoded) if ts_raw is not None else str(uuid.uuid4())
    elif isinstance(raw_id, str) and ID_RE.fullmatch(raw_id):
        eid = event_id(raw_id)
    else:
        return ItemError(index, "invalid_id", "1-128 visible ASCII characters (a UUID is best)", "id", None)
    return Row(index, eid, ts, name, client, source, encoded)


def _name(name: Any) -> str:
    if isinstance(name, str) and NAME_RE.fullmatch(name):
        return name
    if isinstance(name, str) and "/" in name:
        raise _Refused(
            "reserved_name", "names containing `/` are reserved for events the platform derives", "name"
        )
    raise _Refused(
        "invalid_name",
        "1-100 characters: letters, digits and _ . : - (starting with a letter or digit)",
        "name",
    )


def _timestamp(ts_raw: Any, oldest: dt.datetime, newest: dt.datetime) -> dt.datetime:
    if not isinstance(ts_raw, str):
        raise _Refused("invalid_timestamp", "an ISO 8601 string", "timestamp")
    try:
        ts = dt.datetime.fromisoformat(ts_raw)
    except ValueError:
        raise _Refused("invalid_timestamp", "not ISO 8601 (e.g. 2026-11-22T10:00:00Z)", "timestamp") from None
    if ts.tzinfo is None:
        raise _Refused("invalid_timestamp", "give the time zone offset (e.g. Z or +01:00)", "timestamp")
    ts = ts.astimezone(dt.UTC)
    if ts > newest:
        raise _Refused(
            "timestamp_in_future", "more than the allowed skew ahead of the server clock", "timestamp"
        )
    if ts < oldest:
        raise _Refused("timestamp_too_old", "older than the backfill window", "timestamp")
    return ts


def _client_id(client: Any) -> str | None:
    if client is not None and (not isinstance(client, str) or not CLIENT_RE.fullmatch(client)):
        raise _Refused("invalid_client_id", "1-128 characters: letters, digits and _ . : @ + -", "client_id")
    return client


def _source(source: Any) -> str:
    if not isinstance(source, str) or not SOURCE_RE.fullmatch(source) or source == PLATFORM_SOURCE:
        raise _Refused(
            "invalid_source", "1-64 lowercase letters, digits and _ . : - (not `platform`)", "source"
        )
    return source


def _properties(props: Any, max_props: int) -> str:
    """The properties as the JSON text to store."""
    if props is None:
        props = {}
    if not isinstance(props, dict):
        raise _Refused("invalid_properties", "a JSON object", "properties")
    # Two checks, each with its own reason: pydantic's encode error is a ValueError too.
    try:
        json.dumps(props, allow_nan=False)
    except ValueError:
        raise _Refused("invalid_properties", "NaN and Infinity are not JSON", "properties") from None
    try:
        encoded = to_json(props).decode()
    except Exception:
        raise _Refused(
            "invalid_properties", "not valid JSON text (e.g. a lone surrogate)", "properties"
        ) from None
    if len(encoded.encode()) > max_props:
        raise _Refused("properties_too_large", f"larger than {max_props} bytes once encoded", "properties")
    if "\\u0000" in encoded:
        raise _Refused("invalid_properties", "text may not contain NUL characters", "properties")
    return encoded


def parse_items(items: list[Any], limits: Limits) -> tuple[list[Row], list[ItemError]]:
    """Every item -> a row or an error. `_plain_row` only accepts what is plainly valid, as
    cheaply as Python allows (ingest is CPU-bound here); anything else is decided by
    `parse_item`, which gives the precise reason."""
    rows: list[Row] = []
    errors: list[ItemError] = []
    for i, item in enumerate(items):
        row = _plain_row(i, item, limits)
        if row is not None:
            rows.append(row)
            continue
        parsed = parse_item(i, item, limits)
        if isinstance(parsed, ItemError):
            errors.append(parsed)
        else:
            rows.append(parsed)
    return rows, errors


_name_ok, _client_ok, _source_ok, _id_ok, _uuid_ok = (
    NAME_RE.fullmatch,
    CLIENT_RE.fullmatch,
    SOURCE_RE.fullmatch,
    ID_RE.fullmatch,
    UUID_RE.fullmatch,
)


def _plain_row(i: int, item: Any, limits: Limits) -> Row | None:
    """The row of a plainly valid event, else None (`parse_item` then decides)."""
    if type(item) is not dict or not item.keys() <= FIELDS:
        return None
    name = item.get("name")
    client = item.get("client_id")
    source = item.get("source", limits.default_source)
    props = item.get("properties")
    ts_raw = item.get("timestamp")
    raw_id = item.get("id")
    ok = (
        type(name) is str
        and _name_ok(name) is not None
        and (client is None or (type(client) is str and _client_ok(client) is not None))
        and type(source) is str
        and _source_ok(source) is not None
        and source != PLATFORM_SOURCE
        and (props is None or type(props) is dict)
        and (raw_id is None or (type(raw_id) is str and _id_ok(raw_id) is not None))
    )
    if not ok:
        return None
    name = cast(str, name)
    ts = limits.now if ts_raw is None else _plain_time(ts_raw, limits.oldest, limits.newest)
    encoded = _plain_properties(props, limits.max_props) if props else b"{}"
    if ts is None or encoded is None:
        return None
    text_props = encoded.decode()
    if raw_id is None:
        eid = _content_id(name, ts, client, source, text_props) if ts_raw is not None else str(uuid.uuid4())
    else:
        eid = raw_id.lower() if _uuid_ok(raw_id) else str(uuid.uuid5(ID_NAMESPACE, raw_id))
    return Row(i, eid, ts, name, client, source, text_props)


def _plain_time(ts_raw: Any, oldest: dt.datetime, newest: dt.datetime) -> dt.datetime | None:
    try:
        ts = dt.datetime.fromisoformat(ts_raw) if type(ts_raw) is str else None
    except ValueError:
        return None
    if ts is None or ts.tzinfo is None:
        return None
    ts = ts.astimezone(dt.UTC)
    return ts if oldest <= ts <= newest else None


def _plain_properties(props: dict[str, Any], max_props: int) -> bytes | None:
    try:
        encoded = to_json(props, inf_nan_mode="constants")
    except Exception:  # e.g. lone surrogates: let parse_item say why
        return None
    if len(encoded) > max_props or b"\\u0000" in encoded or b"NaN" in encoded or b"Infinity" in encoded:
        return None
    return encoded
