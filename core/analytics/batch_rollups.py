"""The rollups of a fast batch, counted in Python from the request body.

In the fast path every event of the batch is inserted or none is (an id recorded before undoes
the statement and the careful path takes over, rolling up only what it inserted, in SQL). So
the batch's own groups are exactly what the rollups gain, and counting them here saves
PostgreSQL a pass over every row (projecting each event's properties in SQL costs more than
inserting it). The rolled-up properties are decoded a second time, by msgspec straight from
the body into a struct holding only those keys, and grouped in C (`Counter` over columns).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter, defaultdict
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


class _Event(msgspec.Struct, gc=False):
    properties: Kept | None = None  # type: ignore[valid-type]


class _Body(msgspec.Struct, gc=False):
    events: list[_Event]


class _RawEvent(msgspec.Struct, gc=False):
    properties: msgspec.Raw = msgspec.Raw(b"{}")


class _RawBody(msgspec.Struct, gc=False):
    events: list[_RawEvent]


_DECODE = msgspec.json.Decoder(_Body).decode
_DECODE_RAW = msgspec.json.Decoder(_RawBody).decode
_ENCODE = msgspec.json.encode
_NONE = Kept()


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


def batch_rollups(
    body: bytes, events: list[Any], times: list[dt.datetime], now: dt.datetime
) -> BatchRollups | None:
    """Groups of the fast-path `events` decoded from `body`; `times` are the timestamps sent, in
    order, for the events that carry one (the others happen `now`). None when a rolled-up key
    holds a value other than a text, an integer or null (the caller takes the per-item path)."""
    try:
        kept = [e.properties or _NONE for e in _DECODE(body).events]
    except msgspec.ValidationError:
        return None
    step = _FINEST_SECONDS
    if len(times) == len(events):
        buckets = [int(t.timestamp()) // step * step for t in times]
    else:
        sent = iter(times)
        at_now = int(now.timestamp()) // step * step
        buckets = [
            at_now if e.timestamp is None else int(next(sent).timestamp()) // step * step for e in events
        ]
    names = [e.name for e in events]
    counts = Counter(zip(names, buckets, strict=True))
    clients: dict[tuple[str, int], list[str]] = defaultdict(list)
    for name, b, client in set(zip(names, buckets, [e.client_id for e in events], strict=True)):
        if client is not None:
            clients[(name, b)].append(client)
    props = Counter(zip(names, buckets, kept, strict=True))
    at, utc = dt.datetime.fromtimestamp, dt.UTC
    return BatchRollups(
        names=[k[0] for k in counts],
        buckets=[at(k[1], utc) for k in counts],
        counts=list(counts.values()),
        clients=[",".join(clients[k]) if k in clients else None for k in counts],
        p_names=[k[0] for k in props],
        p_buckets=[at(k[1], utc) for k in props],
        p_props=[_ENCODE(k[2]).decode() for k in props],
        p_counts=list(props.values()),
    )


# Separators no value of their column can hold: names, client ids and sources match patterns
# without a comma, ids are UUID-shaped, and JSON text never holds a raw control character.
_SEP, _PROPS_SEP = ",", "\x1f"


def batch_columns(
    body: bytes, events: list[Any], times: list[dt.datetime], now: dt.datetime
) -> dict[str, Any]:
    """The batch as one parameter per column: the times as a typed array (binary), the other
    columns each as one text of the values joined (split by PostgreSQL's `string_to_array`,
    `''` for a missing client id or source), each event's properties as sent (`null` is `{}`),
    parsed by PostgreSQL. One text per column spares the driver a type check and an encoding
    per value (10,000 values a column); the body is never parsed as one JSON document."""
    if len(times) == len(events):
        ts: list[dt.datetime] = times
    else:
        sent = iter(times)
        ts = [now if e.timestamp is None else next(sent) for e in events]
    raw = [e.properties for e in _DECODE_RAW(body).events]
    if any(e.properties is None for e in events):  # a `null` (or absent) object is `{}`
        raw = [msgspec.Raw(b"{}") if e.properties is None else p for e, p in zip(events, raw, strict=True)]
    return {
        "ids": _SEP.join([e.id for e in events]),
        "ts": ts,
        "names": _SEP.join([e.name for e in events]),
        "clients": _SEP.join([e.client_id or "" for e in events]),
        "sources": _SEP.join(["" if e.source is msgspec.UNSET else e.source for e in events]),
        "props": _PROPS_SEP.encode().join(raw).decode(),
    }
