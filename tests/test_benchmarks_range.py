"""benchmarks/range_prior.py runs end to end at a tiny size and prints its figures: the builds per
million records, the prior's cost per request on each path, and the ratios. (The figures at the
default million records are in docs/benchmarks.md.)"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.support.server import REPO


def test_a_small_range_benchmark_prints_builds_lookups_and_ratios():
    args = ["--records", "20000", "--species", "60", "--cells", "12", "--requests", "120"]
    out = subprocess.run(
        [sys.executable, "benchmarks/range_prior.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    text = out.stdout
    assert out.returncode == 0, out.stderr[-3000:]
    assert re.search(r"^range table benchmark: 20,000 synthetic SIMPLE_CSV records of 60 species", text, re.M)
    builds = re.findall(
        r"^build (SIMPLE_CSV|Parquet): .* = +([\d.]+) s and +([\d.]+) MB per million records", text, re.M
    )
    assert [b[0] for b in builds] == ["SIMPLE_CSV", "Parquet"], text
    assert all(float(seconds) > 0 and float(mb) > 0 for _, seconds, mb in builds), text
    counts = re.findall(r"\(([\d,]+) counts, ([\d,]+) cells, 60 species, ([\d,]+) skipped\)", text)
    assert len(counts) == 2 and counts[0] == counts[1], text  # both layouts: the same table
    paths = dict(re.findall(r"^  (.+?) +median +(\d+) us +p95 +\d+ us", text, re.M))
    assert set(paths) == {
        "table, from memory",
        "table, SQLite read",
        "gbif, miss (loopback fake)",
        "gbif, cache hit",
    }
    assert int(paths["table, from memory"]) < 20_000, text  # measured ~0.1-0.2 ms
    ratios = re.search(
        r"^ratios: gbif cache hit / table from memory ([\d.]+)x, gbif cache hit / table SQLite read ([\d.]+)x"
        "$",
        text,
        re.M,
    )
    assert ratios, text
