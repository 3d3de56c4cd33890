"""Writing events: per-item validation, partitions on demand, and the one statement that
records ids, inserts events and updates the rollup together.

The batch path COPYs into a session temp table (PostgreSQL refuses COPY into a table with
row-level security for a role subject to it), then one `INSERT ... SELECT` moves the rows on:
row-level security checks every row there, and only events whose id was not recorded before
are inserted and rolled up, so a resend — even a concurrent one — never counts twice.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, NamedTuple, cast

import msgspec
from pydantic_core import to_json
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from core.analytics.models import GRAINS
from core.errors import Unavailable
from core.observability import get_logger
from core.uow import Database, UnitOfWork

log = get_logger("atlilith.analytics")

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
SMALL_BATCH = 100


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


def parse_item(
    index: int,
    item: Any,
    *,
    now: dt.datetime,
    oldest: dt.datetime,
    newest: dt.datetime,
    max_props: int,
    default_source: str,
) -> Row | ItemError:
    """One raw event -> a row, or the reason it is refused (never an exception)."""
    if not isinstance(item, dict):
        return ItemError(index, "not_an_object", "each event is a JSON object")
    unknown = set(item) - FIELDS
    raw_id = item.get("id")
    shown_id = raw_id if isinstance(raw_id, str) and len(raw_id) <= 128 else None
    if unknown:
        field = sorted(unknown)[0]
        return ItemError(
            index, "unknown_field", f"unknown field {field!r}; fields: {sorted(FIELDS)}", field, shown_id
        )
    name = item.get("name")
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        why = (
            "names containing `/` are reserved for events the platform derives"
            if isinstance(name, str) and "/" in name
            else "1-100 characters: letters, digits and _ . : - (starting with a letter or digit)"
        )
        code = "reserved_name" if isinstance(name, str) and "/" in name else "invalid_name"
        return ItemError(index, code, why, "name", shown_id)
    ts_raw = item.get("timestamp")
    if ts_raw is None:
        ts = now
    else:
        if not isinstance(ts_raw, str):
            return ItemError(index, "invalid_timestamp", "an ISO 8601 string", "timestamp", shown_id)
        try:
            ts = dt.datetime.fromisoformat(ts_raw)
        except ValueError:
            return ItemError(
                index, "invalid_timestamp", "not ISO 8601 (e.g. 2026-11-22T10:00:00Z)", "timestamp", shown_id
            )
        if ts.tzinfo is None:
            return ItemError(
                index,
                "invalid_timestamp",
                "give the time zone offset (e.g. Z or +01:00)",
                "timestamp",
                shown_id,
            )
        ts = ts.astimezone(dt.UTC)
        if ts > newest:
            return ItemError(
                index, "timestamp_in_future", "more than the allowed skew ahead of the server clock",
                "timestamp", shown_id,
            )  # fmt: skip
        if ts < oldest:
            return ItemError(
                index, "timestamp_too_old", "older than the backfill window", "timestamp", shown_id
            )
    client = item.get("client_id")
    if client is not None and (not isinstance(client, str) or not CLIENT_RE.fullmatch(client)):
        return ItemError(
            index,
            "invalid_client_id",
            "1-128 characters: letters, digits and _ . : @ + -",
            "client_id",
            shown_id,
        )
    source = item.get("source", default_source)
    if not isinstance(source, str) or not SOURCE_RE.fullmatch(source) or source == PLATFORM_SOURCE:
        return ItemError(
            index, "invalid_source", "1-64 lowercase letters, digits and _ . : - (not `platform`)", "source",
            shown_id,
        )  # fmt: skip
    props = item.get("properties", {})
    if props is None:
        props = {}
    if not isinstance(props, dict):
        return ItemError(index, "invalid_properties", "a JSON object", "properties", shown_id)
    try:
        encoded = to_json(props).decode()
        json.dumps(props, allow_nan=False)
    except ValueError:
        return ItemError(index, "invalid_properties", "NaN and Infinity are not JSON", "properties", shown_id)
    except Exception:
        return ItemError(
            index, "invalid_properties", "not valid JSON text (e.g. a lone surrogate)", "properties", shown_id
        )
    if len(encoded.encode()) > max_props:
        return ItemError(
            index,
            "properties_too_large",
            f"larger than {max_props} bytes once encoded",
            "properties",
            shown_id,
        )
    if "\\u0000" in encoded:
        return ItemError(
            index, "invalid_properties", "text may not contain NUL characters", "properties", shown_id
        )
    if raw_id is None:
        eid = _content_id(name, ts, client, source, encoded) if ts_raw is not None else str(uuid.uuid4())
    elif isinstance(raw_id, str) and ID_RE.fullmatch(raw_id):
        eid = event_id(raw_id)
    else:
        return ItemError(index, "invalid_id", "1-128 visible ASCII characters (a UUID is best)", "id", None)
    return Row(index, eid, ts, name, client, source, encoded)


def parse_items(
    items: list[Any],
    *,
    now: dt.datetime,
    oldest: dt.datetime,
    newest: dt.datetime,
    max_props: int,
    default_source: str,
) -> tuple[list[Row], list[ItemError]]:
    """Every item -> a row or an error. The loop below only accepts what is plainly valid, as
    cheaply as Python allows (ingest is CPU-bound here); anything else is decided by
    `parse_item`, which gives the precise reason."""
    rows: list[Row] = []
    errors: list[ItemError] = []
    name_ok, client_ok, source_ok, id_ok = (
        NAME_RE.fullmatch,
        CLIENT_RE.fullmatch,
        SOURCE_RE.fullmatch,
        ID_RE.fullmatch,
    )
    uuid_ok = UUID_RE.fullmatch
    parse_ts, utc = dt.datetime.fromisoformat, dt.UTC
    for i, item in enumerate(items):
        if type(item) is dict and item.keys() <= FIELDS:
            name = item.get("name")
            client = item.get("client_id")
            source = item.get("source", default_source)
            props = item.get("properties")
            ts_raw = item.get("timestamp")
            raw_id = item.get("id")
            ok = (
                type(name) is str
                and name_ok(name) is not None
                and (client is None or (type(client) is str and client_ok(client) is not None))
                and type(source) is str
                and source_ok(source) is not None
                and source != PLATFORM_SOURCE
                and (props is None or type(props) is dict)
                and (raw_id is None or (type(raw_id) is str and id_ok(raw_id) is not None))
            )
            if ok:
                name = cast(str, name)
                ts: dt.datetime | None = now
                if ts_raw is not None:
                    try:
                        ts = parse_ts(ts_raw) if type(ts_raw) is str else None
                    except ValueError:
                        ts = None
                    if ts is not None:
                        ts = ts.astimezone(utc) if ts.tzinfo is not None else None
                    if ts is not None and not oldest <= ts <= newest:
                        ts = None
                encoded: bytes | None = b"{}"
                if props:
                    try:
                        encoded = to_json(props, inf_nan_mode="constants")
                    except Exception:  # e.g. lone surrogates: let parse_item say why
                        encoded = None
                    if encoded is not None and (
                        len(encoded) > max_props
                        or b"\\u0000" in encoded
                        or b"NaN" in encoded
                        or b"Infinity" in encoded
                    ):
                        encoded = None
                if ts is not None and encoded is not None:
                    text_props = encoded.decode()
                    if raw_id is None:
                        eid = (
                            _content_id(name, ts, client, source, text_props)
                            if ts_raw is not None
                            else str(uuid.uuid4())
                        )
                    else:
                        eid = raw_id.lower() if uuid_ok(raw_id) else str(uuid.uuid5(ID_NAMESPACE, raw_id))
                    rows.append(Row(i, eid, ts, name, client, source, text_props))
                    continue
        parsed = parse_item(
            i, item, now=now, oldest=oldest, newest=newest, max_props=max_props, default_source=default_source
        )
        if isinstance(parsed, ItemError):
            errors.append(parsed)
        else:
            rows.append(parsed)
    return rows, errors


# --- the fast path: a whole batch validated from its bytes -----------------------------------

# The common case, every event plainly valid, is decoded by msgspec straight from the request
# bytes into slotted structs (no dicts, no per-field Python), and each field's pattern is then
# checked once over all its values joined (one regex pass in C, not one call per value). What
# it accepts `parse_items` would accept with the same values; anything else returns None and
# the caller takes the per-item path, which says precisely what is wrong.
_TS = (
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,6})?"
    r"(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$"
)

# Properties on the fast path: a flat object of short printable strings, 64-bit integers,
# booleans and nulls. No floats, so the JSON PostgreSQL reads is the JSON `parse_items`
# would store (a float's text could differ: 1.00 vs 1.0); no control characters, so nothing
# needs escaping beyond `"` and `\\`; and a known worst case once encoded (4 bytes a
# character), so no per-event size check while that fits the configured limit.
_PROP_KEY_CHARS, _PROP_VALUE_CHARS, _PROP_ITEMS = 64, 200, 7
FAST_PROPS_BYTES = 2 + _PROP_ITEMS * ((2 + 4 * _PROP_KEY_CHARS) + 1 + (2 + 4 * _PROP_VALUE_CHARS) + 1)
_PropValue = (
    Annotated[str, msgspec.Meta(max_length=_PROP_VALUE_CHARS)]
    | bool
    | Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1)]
    | None
)
_Props = Annotated[
    dict[Annotated[str, msgspec.Meta(max_length=_PROP_KEY_CHARS)], _PropValue],
    msgspec.Meta(max_length=_PROP_ITEMS),
]


class FastEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One event as the fast path reads it; patterns are checked batch-wide (`validate_batch`)."""

    id: str
    name: str
    timestamp: str | None = None
    client_id: str | None = None
    source: str | msgspec.UnsetType = msgspec.UNSET  # null is not a source: the per-item path says so
    properties: _Props | None = None


class _Body(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    events: list[FastEvent]


_DECODER = msgspec.json.Decoder(_Body)


def _every(pattern: str) -> Callable[[list[str]], bool]:
    """A check that every value matches `pattern` (anchored `^...$`), in one regex pass over the
    values joined by newlines: no pattern here admits a newline, so a value holding one adds a
    separator, which the count catches."""
    joined = re.compile(f"(?:{pattern.removeprefix('^').removesuffix('$')}\n)*")

    def check(values: list[str]) -> bool:
        text = "\n".join(values) + "\n" if values else ""
        return text.count("\n") == len(values) and joined.fullmatch(text) is not None

    return check


_ALL_UUIDS, _ALL_CLIENTS, _ALL_TIMES = _every(UUID_RE.pattern), _every(CLIENT_RE.pattern), _every(_TS)
_CONTROL = re.compile(r"[\x00-\x1f]")


class RawBatch:
    """A `{"events": [...]}` body whose events all passed the fast checks."""

    __slots__ = ("body", "events", "times")

    def __init__(self, body: bytes, events: list[FastEvent], times: list[dt.datetime]) -> None:
        self.body = body
        self.events = events
        self.times = times  # the timestamps sent (events without one take the server's)

    def idempotency_fingerprint(self) -> str:
        """What an `Idempotency-Key` retry must match: the body as sent (hashed, not walked)."""
        return hashlib.sha256(self.body).hexdigest()


def validate_batch(body: bytes) -> RawBatch | None:
    """The batch if every event in the body is plainly valid, else None (take the JSON path).
    Checks here need nothing but the body; `fast_batch` adds the clock and the limits."""
    try:
        events = _DECODER.decode(body).events
    except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
        return None
    ids = [e.id for e in events]
    if not _ALL_UUIDS(ids) or len(set(map(str.lower, ids))) != len(ids):
        return None
    if not all(NAME_RE.fullmatch(n) for n in {e.name for e in events}):
        return None
    sources = {e.source for e in events}
    sources.discard(msgspec.UNSET)
    if PLATFORM_SOURCE in sources or not all(SOURCE_RE.fullmatch(cast(str, s)) for s in sources):
        return None
    if not _ALL_CLIENTS([c for e in events if (c := e.client_id) is not None]):
        return None
    sent = [t for e in events if (t := e.timestamp) is not None]
    if not _ALL_TIMES(sent):
        return None
    try:
        times = list(map(dt.datetime.fromisoformat, sent))  # the pattern's form; the date may not exist
    except ValueError:
        return None
    if b"\\" in body and not _plain_text(events):
        return None
    return RawBatch(body, events, times)


def _plain_text(events: list[FastEvent]) -> bool:
    """No control character and no lone surrogate in any property key or text. Only a JSON
    escape can put one in a string (raw, the decoder refuses both), so a body without a
    backslash needs no look."""
    keys: set[str] = set()
    texts: list[str] = []
    for e in events:
        if p := e.properties:
            keys.update(p)
            texts.extend(v for v in p.values() if type(v) is str)
    texts.extend(keys)
    everything = "".join(texts)
    if _CONTROL.search(everything):
        return False
    try:
        everything.encode()  # a lone surrogate (`\ud800`) is no text PostgreSQL stores
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True)
class FastBatch:
    """A batch ready for `insert_json`: its body as sent (the fast checks make it read the
    same as `parse_items` would store it) and its time range, for the partitions."""

    body: str
    start: dt.datetime
    end: dt.datetime


def fast_batch(
    batch: RawBatch,
    *,
    now: dt.datetime,
    oldest: dt.datetime,
    newest: dt.datetime,
    max_props: int,
) -> FastBatch | None:
    """The batch as one JSON text PostgreSQL reads itself, when its times are within bounds and
    its properties within the size limit; else None (the per-item path says which event is
    out). The rows are built by the statement, not here."""
    start = min(batch.times, default=now)
    end = max(batch.times, default=now)
    if len(batch.times) < len(batch.events):
        start, end = min(start, now), max(end, now)
    if start < oldest or end > newest:
        return None
    if max_props < FAST_PROPS_BYTES:  # a limit set lower than the fast checks' worst case
        sizes = (len(to_json(p)) for e in batch.events if (p := e.properties))
        if max(sizes, default=0) > max_props:
            return None
    try:
        sent = batch.body.decode()
    except UnicodeDecodeError:
        return None
    return FastBatch(sent, start.astimezone(dt.UTC), end.astimezone(dt.UTC))


# --- partitions -------------------------------------------------------------------------------

_known: dict[str, set[dt.date]] = {}


def _months(start: dt.datetime, end: dt.datetime) -> set[dt.date]:
    month = dt.date(start.year, start.month, 1)
    out: set[dt.date] = set()
    while month <= end.date():
        out.add(month)
        month = dt.date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return out


async def ensure_partitions(db: Database, start: dt.datetime, end: dt.datetime) -> int:
    """Make sure the monthly partitions for [start, end] exist. Runs in its own short
    transaction (the DDL lock must not live as long as the caller's), once per month per
    process. Returns how many were created."""
    start, end = start.astimezone(dt.UTC), end.astimezone(dt.UTC)
    key = db.engine.url.render_as_string(hide_password=True)
    known = _known.setdefault(key, set())
    wanted = _months(start, end)
    if wanted <= known:
        return 0
    try:
        async with db.system() as uow:
            await uow.session.execute(text("SELECT set_config('lock_timeout', '5s', true)"))
            created = (
                await uow.session.execute(
                    text("SELECT analytics.ensure_partitions(:s, :e)"), {"s": start, "e": end}
                )
            ).scalar_one()
    except Unavailable as err:
        raise Unavailable(
            "the event store could not prepare its partitions",
            code="partitions_unavailable",
            hint="retry in a few seconds",
        ) from err
    known |= wanted
    if created:
        log.info("analytics_partitions_created", count=created, start=start.date().isoformat())
    return int(created)


# --- the insert -------------------------------------------------------------------------------

_TEMP = text(
    "CREATE TEMP TABLE IF NOT EXISTS analytics_ingest (idx integer, id text, ts timestamptz, name text,"
    " client_id text, source text, properties jsonb) ON COMMIT DELETE ROWS"
)
_FROM_TEMP = (
    "SELECT idx, CAST(id AS uuid) AS id, ts, name, client_id, source, properties"
    " FROM pg_temp.analytics_ingest"
)
_FROM_PARAMS = (
    "SELECT * FROM unnest(CAST(:idx AS integer[]), CAST(:ids AS uuid[]), CAST(:ts AS timestamptz[]),"
    " CAST(:names AS text[]), CAST(:clients AS text[]), CAST(:sources AS text[]),"
    " CAST(:props AS jsonb[])) AS s(idx, id, ts, name, client_id, source, properties)"
)
# The rollup rows of events: one per (tenant, grain, name, bucket, member); the same SQL
# maintains the rollup at ingest and rebuilds it (benchmarks), from a relation `{events}`
# with tenant_id, name, ts and person_id.
GRAIN_VALUES = ", ".join(f"({g})" for g in GRAINS)
ROLLUP_ROWS = (
    "SELECT tenant_id, g.grain, name,"
    " date_bin(make_interval(mins => g.grain), ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,"
    " person_id, {shard} AS shard, count(*) AS n"
    f" FROM {{events}} CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain) GROUP BY 1, 2, 3, 4, 5"
)
_INSERT = """
WITH src AS ({source}),
fresh AS (
  INSERT INTO analytics.event_ids (tenant_id, id)
  SELECT CAST(:tenant AS uuid), id FROM src ORDER BY id
  {conflict}
  RETURNING id
),
ins AS (
  INSERT INTO analytics.events (id, ts, name, client_id, source, properties, person_id, org_id)
  SELECT s.id, s.ts, s.name, s.client_id, s.source, s.properties, CAST(:person AS uuid), CAST(:org AS uuid)
  FROM src s JOIN fresh f ON f.id = s.id
  RETURNING tenant_id, name, ts, person_id
),
rolled AS (
  INSERT INTO analytics.counts AS c (tenant_id, grain, name, bucket, person_id, shard, n)
  {rollup} ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, person_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS accepted, (SELECT count(*) FROM rolled) AS groups,
       ARRAY(SELECT s.idx FROM src s WHERE NOT EXISTS (SELECT 1 FROM fresh f WHERE f.id = s.id)
             ORDER BY s.idx) AS duplicates
"""
SHARDS = 8
# At ingest: counted once per finest bucket first (a hash aggregate over the batch), then each
# grain from those few groups, instead of sorting every event once per grain. Every grain is
# a multiple of the finest and all share the origin, so a coarse bucket of a fine bucket is the
# coarse bucket of the event itself: the same counts.
_FINEST = min(GRAINS)
assert all(g % _FINEST == 0 for g in GRAINS)
_ROLLUP = (
    "SELECT tenant_id, g.grain, name,"
    " date_bin(make_interval(mins => g.grain), f.bucket, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket,"
    f" person_id, pg_backend_pid() % {SHARDS} AS shard, sum(f.n) AS n"
    f" FROM (SELECT tenant_id, name, person_id, count(*) AS n,"
    f" date_bin(make_interval(mins => {_FINEST}), ts, TIMESTAMPTZ '2000-01-01 00:00:00+00') AS bucket"
    " FROM ins GROUP BY tenant_id, name, person_id, bucket) AS f"
    f" CROSS JOIN (VALUES {GRAIN_VALUES}) AS g(grain) GROUP BY 1, 2, 3, 4, 5"
)
_SKIP = "ON CONFLICT DO NOTHING"
INSERT_FROM_TEMP = text(_INSERT.format(source=_FROM_TEMP, rollup=_ROLLUP, conflict=_SKIP))
# Ids are new in all but resends: a plain insert skips the speculative-insertion work of
# ON CONFLICT, and a conflict (a resend, or a concurrent one) redoes it the careful way.
# In that case every event is new: no join against the recorded ids, the temp table read as is.
INSERT_NEW_FROM_TEMP = text(
    f"""
WITH ids AS (
  INSERT INTO analytics.event_ids (tenant_id, id)
  SELECT CAST(:tenant AS uuid), CAST(id AS uuid) FROM pg_temp.analytics_ingest ORDER BY 2
  RETURNING 1
),
ins AS (
  INSERT INTO analytics.events (id, ts, name, client_id, source, properties, person_id, org_id)
  SELECT CAST(id AS uuid), ts, name, client_id, source, properties, CAST(:person AS uuid), CAST(:org AS uuid)
  FROM pg_temp.analytics_ingest
  RETURNING tenant_id, name, ts, person_id
),
rolled AS (
  INSERT INTO analytics.counts AS c (tenant_id, grain, name, bucket, person_id, shard, n)
  {_ROLLUP} ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, person_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS accepted, (SELECT count(*) FROM ids) AS recorded,
       CAST(ARRAY[] AS integer[]) AS duplicates
"""
)
# The fast path (`fast_batch`): PostgreSQL reads the rows from the batch's JSON itself, no
# COPY and no Python per event. Same inserts, same row-level security, same rollup.
INSERT_NEW_FROM_JSON = text(
    f"""
WITH src AS (
  SELECT e.id, COALESCE(e."timestamp", CAST(:now AS timestamptz)) AS ts, e.name, e.client_id,
         COALESCE(e.source, CAST(:source AS text)) AS source,
         COALESCE(e.properties, CAST('{{}}' AS jsonb)) AS properties
  FROM jsonb_to_recordset(CAST(:body AS jsonb) -> 'events')
    AS e(id uuid, name text, "timestamp" timestamptz, client_id text, source text, properties jsonb)
),
ids AS (
  INSERT INTO analytics.event_ids (tenant_id, id)
  SELECT CAST(:tenant AS uuid), id FROM src ORDER BY 2
  RETURNING 1
),
ins AS (
  INSERT INTO analytics.events (id, ts, name, client_id, source, properties, person_id, org_id)
  SELECT id, ts, name, client_id, source, properties, CAST(:person AS uuid), CAST(:org AS uuid)
  FROM src
  RETURNING tenant_id, name, ts, person_id
),
rolled AS (
  INSERT INTO analytics.counts AS c (tenant_id, grain, name, bucket, person_id, shard, n)
  {_ROLLUP} ORDER BY 1, 2, 3, 4, 5
  ON CONFLICT (tenant_id, grain, name, bucket, person_id, shard) DO UPDATE SET n = c.n + EXCLUDED.n
  RETURNING 1
)
SELECT (SELECT count(*) FROM ins) AS accepted, (SELECT count(*) FROM ids) AS recorded
"""
)
INSERT_FROM_PARAMS = text(_INSERT.format(source=_FROM_PARAMS, rollup=_ROLLUP, conflict=_SKIP))


def _id_conflict(err: IntegrityError) -> bool:
    causes = (err.orig, getattr(err.orig, "__cause__", None))
    return "pk_event_ids" in {getattr(c, "constraint_name", None) for c in causes}


async def insert_json(
    uow: UnitOfWork,
    batch: FastBatch,
    *,
    now: dt.datetime,
    source: str,
    person_id: uuid.UUID,
    org_id: uuid.UUID | None,
) -> int | None:
    """Insert a `fast_batch` whose ids are all new; returns how many were stored, or None when
    one was recorded before (a resend): the savepoint is undone and the caller takes the
    careful path, which tells duplicates apart."""
    params = {
        "body": batch.body,
        "now": now,
        "source": source,
        "tenant": org_id or person_id,
        "person": person_id,
        "org": org_id,
    }
    try:
        async with uow.session.begin_nested():
            result = (await uow.session.execute(INSERT_NEW_FROM_JSON, params)).one()
    except IntegrityError as err:
        if not _id_conflict(err):
            raise
        return None
    return int(result.accepted)


@dataclass(frozen=True)
class Stored:
    accepted: int
    duplicates: list[int]  # batch indexes whose id was recorded before


async def insert(
    uow: UnitOfWork, rows: list[Row], *, person_id: uuid.UUID, org_id: uuid.UUID | None
) -> Stored:
    """Insert rows (ids unique within `rows`) for one context; the rollup follows in the same
    statement. Large batches go through COPY, small ones as array parameters."""
    if not rows:
        return Stored(0, [])
    params: dict[str, Any] = {
        "tenant": org_id or person_id,
        "person": person_id,
        "org": org_id,
    }
    if len(rows) <= SMALL_BATCH:
        params.update(
            idx=[r.idx for r in rows],
            ids=[r.id for r in rows],
            ts=[r.ts for r in rows],
            names=[r.name for r in rows],
            clients=[r.client_id for r in rows],
            sources=[r.source for r in rows],
            props=[r.properties for r in rows],
        )
        result = (await uow.session.execute(INSERT_FROM_PARAMS, params)).one()
    else:
        await uow.session.execute(_TEMP)
        conn = await uow.session.connection()
        raw = await conn.get_raw_connection()
        driver: Any = raw.driver_connection
        await driver.copy_records_to_table(
            "analytics_ingest",
            schema_name="pg_temp",
            columns=("idx", "id", "ts", "name", "client_id", "source", "properties"),
            records=rows,
        )
        try:
            async with uow.session.begin_nested():
                result = (await uow.session.execute(INSERT_NEW_FROM_TEMP, params)).one()
        except IntegrityError as err:
            if not _id_conflict(err):
                raise
            result = (await uow.session.execute(INSERT_FROM_TEMP, params)).one()
    return Stored(int(result.accepted), list(result.duplicates or []))
