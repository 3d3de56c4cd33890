"""Every benchmark still runs end to end, at a small size (a fraction of a second per side), so
the figures quoted in the issues and docs can always be reproduced with `./run bench`. The
resilience benchmark has its own test (tests/resilience)."""

from __future__ import annotations

import os
import re
import subprocess
import sys

from benchmarks.__main__ import available
from tests.conftest import ROOT, _admin_url

SMALL = {
    "BENCH_SECONDS": "0.3",
    "BENCH_CONCURRENCY": "4",
    "BENCH_ANALYTICS_EVENTS": "20000",
    "BENCH_ANALYTICS_BATCH": "500",
    "BENCH_LEDGER_SIZES": "100,1000",
    "BENCH_MSG_THREADS": "200",
    "BENCH_MSG_PER_THREAD": "3",
}


def test_every_benchmark_runs_at_a_small_size() -> None:
    names = [n for n in available() if n != "resilience"]
    env = {**os.environ, **SMALL, "DATABASE_URL": _admin_url(), "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks", *names],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout
    assert done.returncode == 0, (out[-3000:], done.stderr[-3000:])
    for name in names:
        assert f"» {name}:" in out, name
    assert len(re.findall(r"^  \(\d+ s\)$", out, re.MULTILINE)) == len(names)
    # The benchmarks' own consistency checks: what was written is what was counted.
    stored = re.search(
        r"check: ([\d,]+) rows stored \(expected ([\d,]+)\); rollup counts ([\d,]+) .*\(expected ([\d,]+)\)",
        out,
    )
    assert stored and stored[1] == stored[2] and stored[3] == stored[4], out
