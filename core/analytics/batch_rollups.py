"""The rollups of a fast batch, counted in Python from the request body.

In the fast path every event of the batch is inserted or none is (an id recorded before undoes
the statement and the careful path takes over, rolling up only what it inserted, in SQL). So
the batch's own groups are exactly what the rollups gain, and counting them here saves
PostgreSQL a pass over every row (projecting each event's properties in SQL costs more than
inserting it). The rolled-up properties are decoded a second time, by msgspec straight from
the batch's properties (`properties_array`: a quarter of the body) into a struct holding only
those keys, and grouped in C (`Counter` over columns).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Any

import msgspec

from core.analytics.models import GRAINS, ROLLUP_PROPERTIES

_FINEST_SECONDS = min(GRAINS) * 60
# Texts, integers and nulls: values equal in Python exactly when equal in JSON (a boolean would
# equal 1, a float could equal an integer), so the struct is the group key. Absent stays absent.
_Value = str | int | None | msgspec.UnsetType
Kept = msgspec.defstruct(
    "Kept",
    [(k, _Value, msgspec.UNSET) for k in sorted(ROLLUP_PROPERTIES)],
    frozen=True,
    gc=False,
)


class _RawEvent(msgspec.Struct, gc=False):
    properties: msgspec.Raw = msgspec.Raw(b"{}")


class _RawBody(msgspec.Struct, gc=False):
    events: list[_RawEvent]


_DECODE_KEPT = msgspec.json.Decoder(list[Kept]).decode  # type: ignore[valid-type]
_DECODE_RAW = msgspec.json.Decoder(_RawBody).decode
_ENCODE = msgspec.json.encode


@dataclass(frozen=True)
class BatchRollups:
    """Array parameters of the fast insert: per (name, 15-minute bucket) the event count and the
    distinct clients (joined by commas: a client id has none), and per (name, bucket,
    rolled-up properties) the count."""

    names: list[str]
    buckets: list[dt.datetime]
    counts: list[int]
    clients: list[str | None]
    p_names: list[str]
    p_buckets: list[dt.datetime]
    p_props: list[str]
    p_counts: list[int]

    def params(self) -> dict[str, Any]:
        return {
            "r_names": self.names,
            "r_buckets": self.buckets,
            "r_counts": self.counts,
            "r_clients": self.clients,
            "p_names": self.p_names,
            "p_buckets": self.p_buckets,
            "p_props": self.p_props,
            "p_counts": self.p_counts,
        }


def properties_array(body: bytes, events: list[Any]) -> bytes:
    """The properties of the fast-path `events` decoded from `body`, as one JSON array of each
    event's object as sent (`null`, or none, is `{}`)."""
    raw = [e.properties for e in _DECODE_RAW(body).events]
    if any(e.properties is None for e in events):
        raw = [msgspec.Raw(b"{}") if e.properties is None else p for e, p in zip(events, raw, strict=True)]
    return b"".join((b"[", b",".join(raw), b"]"))


def batch_rollups(
    props: bytes, events: list[Any], times: list[dt.datetime], now: dt.datetime
) -> BatchRollups | None:
    """Groups of the fast-path `events`, whose properties are `props` (`properties_array`);
    `times` are the timestamps sent, in order, for the events that carry one (the others
    happen `now`). None when a rolled-up key holds a value other than a text, an integer or
    null (the caller takes the per-item path)."""
    try:
        kept = _DECODE_KEPT(props)
    except msgspec.ValidationError:
        return None
    step = _FINEST_SECONDS
    stamps = map(int, map(dt.datetime.timestamp, times))
    if len(times) == len(events):
        buckets = [s - s % step for s in stamps]
    else:
        at_now = int(now.timestamp()) // step * step
        buckets = [at_now if e.timestamp is None else (s := next(stamps)) - s % step for e in events]
    keys = list(zip([e.name for e in events], buckets, strict=True))  # (name, bucket) per event
    counts = Counter(keys)
    # Each group's distinct clients, in C but for one append per distinct (group, client).
    clients: dict[tuple[str, int], list[str | None]] = {k: [] for k in counts}
    for k, client in dict.fromkeys(zip(keys, [e.client_id for e in events], strict=True)):
        clients[k].append(client)
    groups = Counter(zip(keys, kept, strict=True))
    at, utc = dt.datetime.fromtimestamp, dt.UTC
    return BatchRollups(
        names=[k[0] for k in counts],
        buckets=[at(k[1], utc) for k in counts],
        counts=list(counts.values()),
        clients=[",".join(filter(None, c)) or None for c in clients.values()],  # no client id is ''
        p_names=[k[0][0] for k in groups],
        p_buckets=[at(k[0][1], utc) for k in groups],
        p_props=[_ENCODE(k[1]).decode() for k in groups],
        p_counts=list(groups.values()),
    )


# Separators no value of their column can hold: names, client ids, sources and RFC 3339 times
# match patterns without a comma, and ids are UUID-shaped.
_SEP = ","


def batch_columns(
    props: bytes, events: list[Any], times: list[dt.datetime], now: dt.datetime
) -> dict[str, Any]:
    """The batch as one parameter per column, each one text: the values joined (split by
    PostgreSQL's `string_to_array`, `''` for a missing client id or source), the times as sent
    (RFC 3339 with an offset, checked by the fast path: PostgreSQL reads the instant Python
    read; `now` for an event without one), and the properties `props` (`properties_array`),
    parsed by PostgreSQL as one JSON array. One text per column spares the driver a type
    check and an encoding per value (10,000 values a column; a list of datetimes cost ~10 ms of
    Python a batch, their text ~3 ms of PostgreSQL), and one JSON array is parsed by
    PostgreSQL in one pass (a `jsonb[]` cast parses each element apart, at three times the
    cost); the body is never parsed as one JSON document."""
    sent = [e.timestamp for e in events]
    if len(times) < len(events):
        at_now = now.isoformat()
        sent = [at_now if t is None else t for t in sent]
    return {
        "ids": _SEP.join([e.id for e in events]),
        "ts": _SEP.join(sent),
        "names": _SEP.join([e.name for e in events]),
        "clients": _SEP.join([e.client_id or "" for e in events]),
        "sources": _SEP.join(["" if e.source is msgspec.UNSET else e.source for e in events]),
        "props": props.decode(),
    }
