"""Which rollup rows a bucketed range reads, and where each row counts: the plan behind every
rollup statement (`counting`), in integer minutes since `timebuckets.EPOCH`.

Each bucket's part of the range is cut into signed runs of whole rollup rows, the fewest rows
(`signed`): whole coarse rows inside and finer ones at the edges, or coarse rows reaching past
an edge less the finer ones past it (a Paris day, 23:00 to 23:00 UTC, is an hour plus a UTC day
less an hour: 3 rows, not 24). Counts add up, so every such sum is exact. The runs are then
read as few index ranges as possible (`plan`):

- rows that start inside their own bucket, in runs over several buckets, placed by where they
  start (`own`): runs of them that touch merge, so the 90 UTC days of a 90-day Paris trend are
  one range;
- every other run read once, with the buckets its rows count in and its sign there
  (`weighted`): the hour at 23:00 UTC counts +1 in the Paris day starting there and -1 in the
  one before, so it is read once, not twice; touching runs with the same weights are one range.
"""

from __future__ import annotations

import bisect
import functools
from dataclasses import dataclass

from core.analytics.models import GRAINS

__all__ = ["OWN", "ReadPlan", "pieces", "plan", "signed"]

Run = tuple[int, int, int, int]  # (grain, start, end, +1 or -1), minutes since EPOCH
Piece = tuple[int, int, int, int, int]  # a run and its bucket's index, or OWN
Weights = tuple[tuple[int, int], ...]  # (bucket index, sign), by index
OWN = -1  # a piece whose rows all start inside its bucket: each row finds its bucket itself

_GRAINS = tuple(sorted(GRAINS, reverse=True))
_DESCENT = 4  # an index descent costs about as much as reading this many rows


def _cost(runs: tuple[Run, ...]) -> int:
    """Rollup rows read per member and event, plus an index descent per run."""
    return sum((e - s) // g + _DESCENT for g, s, e, _ in runs)


def signed(a: int, b: int, grains: tuple[int, ...] = _GRAINS) -> tuple[Run, ...]:
    """[a, b) (on the finest grain's grid) as signed runs of whole rows, the fewest rows: whole
    coarse rows inside and finer ones at the edges (a year by UTC week reads 365 daily rows,
    not 35,040 quarter hours), or coarse rows reaching past an edge less the finer ones past it."""
    if a >= b:
        return ()
    shift = a - a % grains[0]  # every grain divides the coarsest: the same shape a day later
    if shift == 0:
        return _shape(a, b, grains)
    return tuple((g, s + shift, e + shift, sign) for g, s, e, sign in _shape(a - shift, b - shift, grains))


@functools.lru_cache(maxsize=4096)
def _shape(a: int, b: int, grains: tuple[int, ...]) -> tuple[Run, ...]:
    g, finer = grains[0], grains[1:]
    if not finer:
        return ((g, a, b, 1),)
    best = signed(a, b, finer)

    def less(runs: tuple[Run, ...]) -> tuple[Run, ...]:
        return tuple((rg, rs, re, -sign) for rg, rs, re, sign in runs)

    lo, hi = a - a % g, b + (-b) % g
    lefts = (
        (lo if lo == a else lo + g, signed(a, lo + g, finer) if lo < a else ()),
        (lo, less(signed(lo, a, finer))),
    )
    rights = ((b - b % g, signed(b - b % g, b, finer)), (hi, less(signed(b, hi, finer))))
    for start, left in lefts:
        for end, right in rights:
            if start < end:
                candidate = (*left, (g, start, end, 1), *right)
                if _cost(candidate) < _cost(best):
                    best = candidate
    return best


def pieces(a: int, b: int, th: list[int]) -> list[Piece]:
    """The signed runs of each bucket's part of [a, b) (bucket starts `th`, sorted, the first
    at or before `a`), each with its bucket's index, or OWN for a run whose rows all start
    inside the bucket (a row may reach past the bucket's end: what places it is its start)."""
    out: list[Piece] = []
    i = bisect.bisect_right(th, a) - 1
    last = len(th) - 1
    top = _GRAINS[0]
    u = a
    while u < b:
        v = th[i + 1] if i < last and th[i + 1] < b else b
        shift = u - u % top  # the shape of [u, v) a whole number of coarsest rows earlier
        for g, s, e, sign in _shape(u - shift, v - shift, _GRAINS):
            s, e = s + shift, e + shift
            out.append((g, s, e, sign, OWN if sign > 0 and s >= u and e - g < v else i))
        u, i = v, i + 1
    return out


@dataclass(frozen=True)
class ReadPlan:
    """The index ranges of rollup rows a range reads: `own` ranges (grain, start, end), each
    row counted +1 in the bucket holding its start; `weighted` ranges (grain, start, end,
    weights), each row counted in each listed bucket with its sign."""

    own: list[tuple[int, int, int]]
    weighted: list[tuple[int, int, int, Weights]]


def plan(a: int, b: int, th: list[int]) -> ReadPlan:
    """The fewest index ranges reading every piece of [a, b) (`pieces`) with its sign."""
    owns: list[tuple[int, int, int]] = []
    weights: dict[tuple[int, int, int], dict[int, int]] = {}  # (grain, start, end) -> {bucket: sign}
    for g, s, e, sign, index in pieces(a, b, th):
        if index == OWN:
            owns.append((g, s, e))
        else:
            _add(weights, (g, s, e), index, sign)
    own: list[tuple[int, int, int]] = []
    owns.sort()
    owns.append((0, 0, 0))  # ends the last run
    g, s, e = owns[0]
    for ng, ns, ne in owns[1:]:
        if ng == g and ns == e:  # own runs of a grain that touch are one range
            e = ne
            continue
        # A run inside one bucket is a weight there, read once with the same rows weighted
        # otherwise (a Paris day's edge hour: +1 in the day starting there, -1 in the day
        # before); a run over several buckets places each row by its start.
        first = bisect.bisect_right(th, s) - 1
        if first == bisect.bisect_right(th, e - g) - 1:
            _add(weights, (g, s, e), first, 1)
        else:
            own.append((g, s, e))
        g, s, e = ng, ns, ne
    weighted: list[tuple[int, int, int, Weights]] = []
    run: tuple[int, int, int] = (0, 0, 0)  # touching ranges with the same weights: one range
    run_weights: Weights = ()
    for (g, s, e), by in sorted(weights.items()):
        w = tuple(sorted(item for item in by.items() if item[1]))
        if not w:
            continue  # counted +1 and -1 in one bucket: not read at all
        if run[0] == g and run[2] == s and w == run_weights:
            run = (g, run[1], e)
            continue
        if run_weights:
            weighted.append((*run, run_weights))
        run, run_weights = (g, s, e), w
    if run_weights:
        weighted.append((*run, run_weights))
    return ReadPlan(own, weighted)


def _add(
    weights: dict[tuple[int, int, int], dict[int, int]], key: tuple[int, int, int], bucket: int, sign: int
) -> None:
    by = weights.get(key)
    if by is None:
        weights[key] = {bucket: sign}
    else:
        by[bucket] = by.get(bucket, 0) + sign
