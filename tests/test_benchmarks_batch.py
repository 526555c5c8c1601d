"""benchmarks/batch.py runs end to end on a few photos and prints its table: every side's rate,
the ratios with their verdicts, the core-hours; without ../shared it says so and exits 2."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from tests.support.server import REPO
from tests.support.shared import HAS_SHARED, NO_SHARED


def run_benchmark(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "benchmarks/batch.py", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_without_shared_it_says_so_and_exits_2(tmp_path):
    out = run_benchmark("--photos", "1", env={"SPECIES_SHARED_DIR": str(tmp_path / "nowhere")})
    assert out.returncode == 2, out.stderr[-3000:]
    assert "this benchmark needs ../shared" in out.stderr


@pytest.mark.shared
@pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)
def test_a_tiny_run_prints_every_side_ratio_and_verdict():
    out = run_benchmark("--photos", "4", "--big-photos", "2", "--rounds", "1", "--no-ray")
    text = out.stdout
    # 1 = a FAIL verdict (a noisy machine: 4 photos take a fraction of a second), not a crash;
    # the closing verdict line says which, and a traceback never prints it.
    verdict = re.search(r"^(PASS: every goal met|FAIL: a goal missed, or answers failed)$", text, re.M)
    assert verdict, text + out.stderr[-3000:]
    assert out.returncode == (0 if verdict[1].startswith("PASS") else 1), text
    machine = r"^\d+ cores; batch's default \d+ inference workers; models: aiy_birds_v1, aiy_insects_v1 "
    assert re.search(machine, text, re.M), text
    assert re.search(r"^photos: 4 real photos, 2 12 MP JPEGs;", text, re.M), text
    for name, count in (("real photos", 4), ("12 MP JPEGs", 2)):
        table = text.split(f"\n{name}: {count} photos, one observation each\n", 1)[1].split("\n\n", 1)[0]
        for side in (r"\(a\) bare limit: .*, \d+ threads", r"\(b\) batch local: answer_all \+ journal",
                     r"\(d\) answer_all, outcomes to a list", r"run_collection whole"):  # fmt: skip
            rate = re.search(rf"^  +{side} .*? ([\d.]+) +([\d.]+)   [\d. ]+", table, re.M)
            assert rate, table
            assert float(rate[1]) > 1 and float(rate[2]) > 1, table  # photos/s, CPU ms per photo
        for ratio, goal in ((r"\(b\)/\(a\)  local / bare limit", 0.9), (r"\(d\)      journal / list", 0.95)):
            assert re.search(rf"^  ratio {ratio} +[\d.]+  (PASS|FAIL) \(>= {goal}\)", table, re.M), table
        assert "Ray" not in table, table  # --no-ray
        assert re.search(r"^  core-hours per 10 million photos \(local, [\d.]+ photos/s on \d+ cores\): \d+$",
                         table, re.M), table  # fmt: skip
    assert re.search(r"^\d+ answers checked, 0 failed;", text, re.M), text
