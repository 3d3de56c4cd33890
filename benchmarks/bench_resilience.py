"""Resilience: kill -9, a PostgreSQL restart and an Inngest outage under write load; the report.

Bounded (RESILIENCE_SECONDS per load phase, default 2) and on loopback only; the PostgreSQL
restart uses an embedded server in .atlilith/resilience/ whatever DATABASE_URL says."""

from __future__ import annotations

import os

from benchmarks.resilience import render, run_all


async def run() -> str:
    scenarios = await run_all(seconds=float(os.environ.get("RESILIENCE_SECONDS", "2")))
    report = render(scenarios)
    if not all(s.ok for s in scenarios):
        report += "\n\n  RESILIENCE: FAILED (see PROBLEM lines)"
    return report
