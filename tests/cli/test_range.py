"""`python -m app build-range OCCURRENCES --out TABLE` as a user runs it: a zipped SIMPLE_CSV
download in, the table out, what it kept and skipped printed; the cell size from
GEO_PRIOR_CELL_DEG unless given; refusals (exit 2: no such file, not a download, --engine ray on
text; exit 1: nothing kept)."""

from __future__ import annotations

import re
import sqlite3

from tests.cli.runner import ok, refused, run_cli, usage_error
from tests.support.occurrences import Occurrence, write_simple_csv

MONARCH = 5133088


def download(path, n_bad: int = 2):  # type: ignore[no-untyped-def]
    good = [Occurrence.of("Danaus plexippus", MONARCH, 40.2, -75.3, m) for m in (6, 7, 8)]
    bad = [Occurrence.of("Danaus plexippus", MONARCH, 40.2, -75.3, 7, status="ABSENT")] * n_bad
    return write_simple_csv(path, good + bad + [Occurrence("", "", "", "", "")], zipped=True)


def test_build_range_writes_the_table_and_prints_what_it_kept(tmp_path):
    table = tmp_path / "tables" / "range.sqlite"
    result = ok(run_cli("build-range", download(tmp_path / "0012345.zip"), "--out", table, "--no-progress",
                        manifest=None, env={"GEO_PRIOR_CELL_DEG": "0.5"}))  # fmt: skip
    out = result.stdout
    assert re.search(r"^read 6 records from .*0012345\.zip \(SIMPLE_CSV, 1 file\)", out, re.M), out
    assert "kept 3 records of 1 species in 1 cells of 0.5 degrees: 3 counts" in out, out
    assert "  not_present: 2 (" in out and "  no_species: 1 (" in out, out
    assert f"wrote {table}" in out and f"GEO_PRIOR_TABLE={table}" in out, out
    with sqlite3.connect(table) as db:
        assert dict(db.execute("SELECT key, value FROM meta"))["cell_deg"] == "0.5"
        assert db.execute("SELECT SUM(n) FROM counts").fetchone() == (3,)

    coarse = ok(run_cli("build-range", tmp_path / "0012345.zip", "--out", table, "--cell-deg", "2",
                        "--no-progress", manifest=None))  # fmt: skip
    assert "cells of 2 degrees" in coarse.stdout


def test_build_range_refuses_what_it_cannot_read(tmp_path):
    table = tmp_path / "range.sqlite"
    missing = refused(run_cli("build-range", tmp_path / "none.zip", "--out", table, manifest=None))
    assert "no such file" in missing
    other = tmp_path / "photos.csv"
    other.write_text("path,label\na.jpg,Danaus plexippus\n")
    assert "not a GBIF occurrence download" in refused(
        run_cli("build-range", other, "--out", table, manifest=None)
    )
    ray = refused(run_cli("build-range", download(tmp_path / "d.zip"), "--out", table, "--engine", "ray",
                          manifest=None))  # fmt: skip
    assert "--engine ray reads Parquet" in ray or "'ray' extra" in ray
    assert "--engine is local or ray" in refused(
        run_cli("build-range", tmp_path / "d.zip", "--out", table, "--engine", "spark", manifest=None)
    )
    assert "--out" in usage_error(run_cli("build-range", tmp_path / "d.zip", manifest=None))
    absent = tmp_path / "absent.zip"
    write_simple_csv(
        absent, [Occurrence.of("Danaus plexippus", MONARCH, 40.2, -75.3, 7, status="ABSENT")], zipped=True
    )
    empty = run_cli("build-range", absent, "--out", table, "--no-progress", manifest=None)
    assert refused(empty, 1).endswith("was kept: nothing written") and "not_present: 1" in empty.stdout
    assert not table.exists()
