"""The fast path: a whole batch validated from its bytes.

The common case, every event plainly valid, is decoded by msgspec straight from the request
bytes into slotted structs (no dicts, no per-field Python), and each field's pattern is then
checked once over all its values joined (one regex pass in C, not one call per value). What
it accepts `parsing.parse_items` would accept with the same values; anything else returns None
and the caller takes the per-item path, which says precisely what is wrong.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, cast

import msgspec
from pydantic_core import to_json

from core.analytics.batch_rollups import BatchRollups, batch_columns, batch_rollups, properties_array
from core.analytics.parsing import CLIENT_RE, NAME_RE, PLATFORM_SOURCE, SOURCE_RE, UUID_RE

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
    """A batch ready for `insert_fast`: its columns (the fast checks make them read the same as
    `parse_items` would store them), its time range, for the partitions, and its rollup groups."""

    columns: dict[str, Any]
    size: int  # events in the batch
    start: dt.datetime
    end: dt.datetime
    rollups: BatchRollups


def fast_batch(
    batch: RawBatch,
    *,
    now: dt.datetime,
    oldest: dt.datetime,
    newest: dt.datetime,
    max_props: int,
) -> FastBatch | None:
    """The batch as columns for one statement, when its times are within bounds and its
    properties within the size limit; else None (the per-item path says which event is out)."""
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
        batch.body.decode()  # text PostgreSQL would refuse: the per-item path says where
    except UnicodeDecodeError:
        return None
    props = properties_array(batch.body, batch.events)
    rollups = batch_rollups(props, batch.events, batch.times, now)
    if rollups is None:
        return None
    columns = batch_columns(props, batch.events, batch.times, now)
    return FastBatch(columns, len(batch.events), start.astimezone(dt.UTC), end.astimezone(dt.UTC), rollups)
