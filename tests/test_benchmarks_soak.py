"""benchmarks/soak.py runs end to end in a few seconds and prints its table; its RSS trend helper
tells a plateau from a steady climb. (The 10-minute figures are in docs/benchmarks.md, "Soak".)"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from benchmarks.soak import rss_trend
from tests.support.server import REPO
from tests.support.shared import HAS_SHARED, NO_SHARED


def test_rss_trend_separates_a_plateau_from_a_leak():
    plateau = [(t, 100 + min(t, 120) / 10) for t in range(0, 600, 5)]  # warms up, then flat
    leak = [(t, 100 + t / 10) for t in range(0, 600, 5)]  # 6 MiB a minute, all along
    _, first, second = rss_trend(plateau, 60)
    assert first > 0 and second == 0
    slope, first, second = rss_trend(leak, 60)
    assert slope == pytest.approx(6.0) and first == pytest.approx(second, rel=0.05)


@pytest.mark.shared
@pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)
def test_a_short_soak_prints_its_rows_totals_and_verdict():
    args = ["--minutes", "0.1", "--interval", "3", "--capacity-seconds", "2", "--index-photos", "2"]
    args += ["--load-fraction", "0.3"]
    out = subprocess.run(
        [sys.executable, "benchmarks/soak.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout
    assert out.returncode in (0, 1), out.stderr[-3000:]  # 1 = FAIL verdict (a noisy machine), not a crash
    capacity = re.search(r"^capacity: ([\d.]+) requests/s closed-loop at concurrency 16", text, re.M)
    assert capacity, text
    assert float(capacity[1]) >= 10, text  # measured 79-80 requests/s on 2 shared cores
    rate = re.search(r"^soak: [\d.]+ min open-loop at ([\d.]+) requests/s", text, re.M)
    assert rate, text
    assert re.search(r"^minute \| offered +done +req/s \| errors", text, re.M), text
    rows = re.findall(r"^ +\d+s \| +(\d+) +(\d+) ", text, re.M)
    assert len(rows) == 2, text  # 6 s in rows of 3 s
    offered = sum(int(offered) for offered, _ in rows)
    assert offered == pytest.approx(6 * float(rate[1]), rel=0.15), text  # measured 142 at 23.6/s
    total = re.search(r"^total: (\d+) offered, (\d+) answered .*, (\d+) errors .* p99 (\d+) ms,", text, re.M)
    assert total, text
    assert int(total[2]) >= 0.95 * int(total[1]), text  # measured every one: 142 of 142, 145 of 145
    assert int(total[3]) <= 0.01 * int(total[1]), text  # measured 0 errors
    assert int(total[4]) < 2000, text  # measured p99 54-57 ms at 30 % of capacity
    assert all(re.search(rf"^  {kind} +\d+ requests", text, re.M) for kind in ("upload", "url")), text
    assert re.search(r"^RSS: [\d.]+ MiB at the start, .* growth after the first row [-+][\d.]+ %", text, re.M)
    verdict = re.search(r"^(PASS|FAIL): \d+ errors \(target 0\), RSS growth ([-+][\d.]+) %", text, re.M)
    assert verdict, text
    assert float(verdict[2]) < 20, text  # measured +0.00 % and +0.33 % (285-293 MiB) over the 6 s
