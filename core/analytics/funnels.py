"""Funnels: clients who did step 1 in a range, then each next step in order, within a
conversion window from their first step 1."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from sqlalchemy import text

from core.analytics._queries import fetch_rows, limit_time, resolve
from core.analytics.filters import PropertyFilter, compile_filters, parse_filters
from core.analytics.policy import READ, check_name
from core.analytics.presenters import context_out, context_text, duration, range_out
from core.analytics.schemas import FunnelIn, FunnelOut, FunnelQueryOut, FunnelStepIn, FunnelStepOut
from core.analytics.timebuckets import Range
from core.analytics.timelines import StepResult, funnel_from_timelines
from core.context import TenantContext
from core.errors import FieldIssue, ValidationFailed
from core.uow import UnitOfWork

_WINDOW = re.compile(r"^\s*(\d{1,5})\s*(m|min|h|d|w)\s*$")
_WINDOW_UNITS = {"m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_WHERE = re.compile(r"\s+where\s+", re.IGNORECASE)
_AND = re.compile(r"\s+and\s+", re.IGNORECASE)
Step = tuple[str, list[PropertyFilter]]  # (event name, its filters)


async def funnel(ctx: TenantContext, uow: UnitOfWork, q: FunnelIn) -> FunnelOut:
    """Clients who did step 1 in the range, then each next step in order, all within the
    window from their first step 1: counts, conversion, median time to convert."""
    ctx.require(READ)
    steps = _steps(q)
    window = _window_seconds(q.window)
    rng = resolve(q)
    await limit_time(uow)
    if any(f for _, f in steps):
        rows = await _by_sql(ctx, uow, steps, rng, window)
    else:
        rows = await funnel_from_timelines(
            uow, ctx.tenant_id, [n for n, _ in steps], rng.start, rng.end, window
        )
    counts = [r.clients for r in rows]
    labels = [_step_label(n, f) for n, f in steps]
    out_steps = [_step_out(k, steps[k], row, counts) for k, row in enumerate(rows)]
    conversion = counts[-1] / counts[0] if counts[0] else None
    median = out_steps[-1].median_seconds_from_start
    return FunnelOut(
        context=context_out(ctx),
        query=FunnelQueryOut(steps=labels, window=q.window, window_seconds=window, range=range_out(rng)),
        steps=out_steps,
        conversion=conversion,
        median_seconds_to_convert=median,
        text=_funnel_text(ctx, q, rng, labels, out_steps, conversion),
    )


async def _by_sql(
    ctx: TenantContext, uow: UnitOfWork, steps: list[Step], rng: Range, window: int
) -> list[StepResult]:
    """The funnel in SQL, for steps with property filters (timelines hold no properties)."""
    preds, params = _step_predicates(steps)
    params.update(
        tenant=ctx.tenant_id,
        start=rng.start,
        end=rng.end,
        horizon=rng.end + dt.timedelta(seconds=window),
        window=window,
    )
    # Every join of a funnel is clients against a step's events, all of them: hashed. A filter's
    # guessed selectivity (0.5 %) once made PostgreSQL rescan a step's range per client in a
    # nested loop (195 s instead of 1.2 s over 10M events); off for this transaction only.
    await uow.session.execute(text("SELECT set_config('enable_nestloop', 'off', true)"))
    rows = await fetch_rows(uow, _funnel_sql(len(steps), preds, [n for n, _ in steps]), params)
    return [StepResult(int(r.n), r.from_prev, r.from_start) for r in rows]


def _steps(q: FunnelIn) -> list[Step]:
    """The steps parsed; two consecutive ones may not be the same event with the same filters."""
    steps = [_step(s, i) for i, s in enumerate(q.steps)]
    for i in range(1, len(steps)):
        if steps[i][0] == steps[i - 1][0] and [f.text() for f in steps[i][1]] == [
            f.text() for f in steps[i - 1][1]
        ]:
            raise ValidationFailed(
                "two consecutive steps are the same event with the same filters",
                code="invalid_funnel",
                hint="each step must differ from the one before it",
                errors=[FieldIssue(f"steps.{i}", "same as the previous step")],
            )
    return steps


def _step_predicates(steps: list[Step]) -> tuple[list[str], dict[str, Any]]:
    """Per step, the SQL condition an event meets to count as it, and the parameters of all."""
    preds: list[str] = []
    params: dict[str, Any] = {}
    for k, (name, filters) in enumerate(steps):
        where, p = compile_filters(filters, f"s{k}")
        params.update(p)
        params[f"n{k}"] = name
        preds.append(f"name = CAST(:n{k} AS text) AND {where}")
    return preds, params


def _step_out(k: int, step: Step, row: StepResult, counts: list[int]) -> FunnelStepOut:
    first, prev = counts[0], counts[k - 1] if k else None
    return FunnelStepOut(
        step=k + 1,
        event=step[0],
        filters=[f.text() for f in step[1]],
        clients=counts[k],
        conversion_from_start=(counts[k] / first if first else None) if k else (1.0 if first else None),
        conversion_from_previous=(counts[k] / prev if prev else None) if k else None,
        median_seconds_from_previous=row.median_from_previous,
        median_seconds_from_start=row.median_from_start,
    )


def _funnel_text(
    ctx: TenantContext,
    q: FunnelIn,
    rng: Range,
    labels: list[str],
    out_steps: list[FunnelStepOut],
    conversion: float | None,
) -> str:
    median = out_steps[-1].median_seconds_from_start
    return (
        f"Funnel {' → '.join(labels)} within {q.window}: "
        + ", ".join(f"{s.clients}" for s in out_steps)
        + " clients"
        + (f"; {conversion * 100:.1f}% converted" if conversion is not None else "; nobody entered")
        + (f", median time to convert {duration(median)}" if median is not None else "")
        + f". Entry range {rng.local(rng.start)} to {rng.local(rng.end)} ({rng.tz.key}),"
        + f" {context_text(ctx)}."
    )


def _step_label(name: str, filters: list[PropertyFilter]) -> str:
    return name + (" where " + " and ".join(f.text() for f in filters) if filters else "")


def _window_seconds(raw: str) -> int:
    match = _WINDOW.match(raw.lower())
    seconds = int(match.group(1)) * _WINDOW_UNITS[match.group(2)] if match else 0
    if not 60 <= seconds <= 90 * 86400:
        raise ValidationFailed(
            f"window {raw!r} is not a duration between 1 minute and 90 days",
            code="invalid_window",
            hint="e.g. `30m`, `12h`, `14d`, `2w`",
            errors=[FieldIssue("window", "1m to 90d")],
        )
    return seconds


def _step(raw: str | FunnelStepIn, i: int) -> tuple[str, list[PropertyFilter]]:
    if isinstance(raw, FunnelStepIn):
        return check_name(raw.event, f"steps.{i}"), parse_filters(raw.filters, f"steps.{i}.filters")
    head, *rest = _WHERE.split(raw.strip(), maxsplit=1)
    name = check_name(head.strip(), f"steps.{i}")
    exprs = _AND.split(rest[0]) if rest else []
    return name, parse_filters([e for e in exprs if e.strip()], f"steps.{i}.filters")


def _funnel_sql(count: int, step_preds: list[str], names: list[str]) -> str:
    def after(k: int) -> str:
        # The same event again must be a later one; another event may share the instant.
        return ">" if names[k - 1] == names[k - 2] else ">="

    def hits(k: int, until: str) -> str:
        # One step's events on their own: without filters, an index-only scan of the name's
        # range (the client rides in the index's leaves), never a visit to the heap pages of
        # every event of the range.
        return (
            f"SELECT client_id, ts FROM analytics.events WHERE tenant_id = :tenant AND {step_preds[k - 1]}"
            f" AND client_id IS NOT NULL AND ts >= :start AND ts < {until}"
        )

    ctes = [f"s1 AS (SELECT client_id, min(ts) AS t1 FROM ({hits(1, ':end')}) AS e GROUP BY client_id)"]
    for k in range(2, count + 1):
        prev_cols = ", ".join(f"s.t{j}" for j in range(1, k))
        ctes.append(
            f"s{k} AS (SELECT s.client_id, {prev_cols}, min(e.ts) AS t{k} FROM s{k - 1} s"
            f" JOIN ({hits(k, ':horizon')}) AS e ON e.client_id = s.client_id AND e.ts {after(k)} s.t{k - 1}"
            f" AND e.ts <= s.t1 + make_interval(secs => :window)"
            f" GROUP BY s.client_id, {prev_cols})"
        )
    selects = [
        "SELECT 1 AS step, count(*) AS n, NULL::float8 AS from_prev, NULL::float8 AS from_start FROM s1"
    ]
    for k in range(2, count + 1):
        selects.append(
            f"SELECT {k}, count(*),"
            f" percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t{k} - t{k - 1})),"
            f" percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM t{k} - t1)) FROM s{k}"
        )
    return "WITH " + ",\n".join(ctes) + "\n" + "\nUNION ALL ".join(selects) + "\nORDER BY 1"
