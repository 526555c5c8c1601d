"""build-range's builder (app/services/range_build.py) on made-up GBIF downloads: what it keeps
and what it counts and skips (each malformed kind), SIMPLE_CSV zipped or not, a Darwin Core
Archive and Parquet with the same records giving the same table, the cells being the geo
prior's, and the refusals (not an occurrence download; nothing kept)."""

from __future__ import annotations

import random
import sqlite3
import zipfile
from pathlib import Path

import numpy as np
import pytest

from app.enrich.geo import Cell, cell_index, cell_indices
from app.enrich.range_table import FORMAT, RangeTable
from app.services.range_build import (
    SKIP_REASONS,
    EmptyTable,
    NotOccurrences,
    Tally,
    build_range_table,
    tally_parquet,
)
from tests.support.occurrences import (
    SIMPLE_CSV_COLUMNS,
    Occurrence,
    synthetic,
    write_dwca,
    write_parquet,
    write_simple_csv,
)

MONARCH, LADY = 5133088, 1898286  # GBIF's speciesKeys of Danaus plexippus and Vanessa cardui
PHILADELPHIA, LONDON = (40.2, -75.3), (51.5, -0.1)


def records() -> list[Occurrence]:
    """Monarchs near Philadelphia in summer, painted ladies in London in winter, a swallowtail
    without a key, and one record of each malformed kind."""
    good = [
        *(Occurrence.of("Danaus plexippus", MONARCH, *PHILADELPHIA, month) for month in (6, 7, 7, 8)),
        Occurrence.of("Danaus plexippus", MONARCH, 40.9, -75.9),  # undated, same cell
        Occurrence("Danaus plexippus", str(MONARCH), "40.5", "-75.5", "13"),  # no month: kept undated
        Occurrence.of("Vanessa cardui", LADY, *LONDON, 12),
        Occurrence.of("Vanessa cardui", LADY, *LONDON, 1),
        Occurrence.of("Papilio machaon", None, *LONDON, 6),  # a name, no key
        Occurrence.of("", LADY, *LONDON, 6),  # a key, no name
        Occurrence.of("Danaus  PLEXIPPUS", MONARCH, *PHILADELPHIA, 7, status=" present "),  # as written
    ]
    bad = [
        Occurrence("Danaus plexippus", str(MONARCH), "", "-75.3", "7"),  # no_coordinates
        Occurrence("Danaus plexippus", str(MONARCH), "forty", "-75.3", "7"),  # no_coordinates
        Occurrence.of("Danaus plexippus", MONARCH, 91.5, -75.3, 7),  # coordinates_out_of_range
        Occurrence.of("Danaus plexippus", MONARCH, 40.2, -180.5, 7),  # coordinates_out_of_range
        Occurrence.of("Danaus plexippus", MONARCH, *PHILADELPHIA, 7, status="ABSENT"),  # not_present
        Occurrence.of("", None, *PHILADELPHIA, 7),  # no_species
        Occurrence.of("Danaus plexippus", MONARCH, 0.0, 0.0, 7, issue="ZERO_COORDINATE"),  # geospatial
        Occurrence.of("Danaus plexippus", MONARCH, *PHILADELPHIA, 7, issue="RECORDED_DATE_MISMATCH"),  # kept
    ]
    return good + bad


EXPECTED_SKIPPED = {
    "malformed_row": 0,
    "not_present": 1,
    "no_species": 1,
    "no_coordinates": 2,
    "coordinates_out_of_range": 2,
    "geospatial_issue": 1,
}


def rows(table: Path) -> list[tuple[object, ...]]:
    with sqlite3.connect(table) as db:
        return sorted(
            db.execute(
                "SELECT c.cell_lat, c.cell_lon, c.month, s.species_key, s.name, c.n "
                "FROM counts c JOIN species s ON s.id = c.species"
            ).fetchall(),
            key=repr,
        )


def meta(table: Path) -> dict[str, str]:
    with sqlite3.connect(table) as db:
        return dict(db.execute("SELECT key, value FROM meta").fetchall())


@pytest.mark.parametrize("zipped", [False, True])
def test_a_simple_csv_download_is_counted_and_its_malformed_rows_skipped(tmp_path, zipped):
    lines = ["only\tthree\tfields", "", "\t".join(["x"] * 51)]  # two malformed lines, one blank
    source = write_simple_csv(tmp_path / ("occ.zip" if zipped else "occ.csv"), records(), zipped=zipped,
                              extra_lines=lines)  # fmt: skip
    report = build_range_table(source, tmp_path / "range.sqlite", 1.0)
    assert report.layout == "SIMPLE_CSV" and report.files == 1
    assert dict(report.skipped) == {**EXPECTED_SKIPPED, "malformed_row": 2}
    assert report.kept == 12 and report.rows == 12 + sum(EXPECTED_SKIPPED.values()) + 2
    assert (report.undated, report.month_unusable) == (1, 1)
    assert report.species == 4  # (monarch), (lady), (swallowtail, no key), (lady's key, no name)
    assert cell_index(40.9, -75.9, 1.0) == cell_index(*PHILADELPHIA, 1.0) == (40, -76)
    assert report.cells == 2 and report.entries == 8  # Philadelphia's (40.9, -75.9 too) and London's
    text = "\n".join(report.lines())
    for reason in SKIP_REASONS:
        assert f"  {reason}: {EXPECTED_SKIPPED[reason] + (2 if reason == 'malformed_row' else 0):,}" in text
    assert "kept 12 records of 4 species in 2 cells" in text

    philly = cell_index(*PHILADELPHIA, 1.0)
    assert rows(tmp_path / "range.sqlite") == sorted(
        [
            (*philly, 6, MONARCH, "danaus plexippus", 1),
            (*philly, 7, MONARCH, "danaus plexippus", 4),  # two, the one as written, the flagged one
            (*philly, 8, MONARCH, "danaus plexippus", 1),
            (*philly, 0, MONARCH, "danaus plexippus", 2),  # undated at 40.9, -75.9, and month 13
            (*cell_index(*LONDON, 1.0), 12, LADY, "vanessa cardui", 1),
            (*cell_index(*LONDON, 1.0), 1, LADY, "vanessa cardui", 1),
            (*cell_index(*LONDON, 1.0), 6, None, "papilio machaon", 1),
            (*cell_index(*LONDON, 1.0), 6, LADY, "", 1),
        ],
        key=repr,
    )
    info = meta(tmp_path / "range.sqlite")
    assert info["format"] == FORMAT and float(info["cell_deg"]) == 1.0
    assert info["kept"] == "12" and info["skipped_no_coordinates"] == "2" and info["layout"] == "SIMPLE_CSV"
    assert not (tmp_path / "range.sqlite.tmp").exists()


def test_simple_csv_dwca_and_parquet_of_the_same_records_give_the_same_table(tmp_path):
    recs = records() + list(synthetic(5000, species=40, seed=3))
    sources = {
        "SIMPLE_CSV": write_simple_csv(tmp_path / "occ.csv", recs),
        "zip": write_simple_csv(tmp_path / "occ.zip", recs, zipped=True),
        "DwC-A": write_dwca(tmp_path / "dwca.zip", recs),
        "Parquet": write_parquet(tmp_path / "occ.parquet", recs, row_group_size=700),
    }
    dwca_folder = tmp_path / "dwca"
    zipfile.ZipFile(sources["DwC-A"]).extractall(dwca_folder)
    sources["DwC-A folder"] = dwca_folder
    tables, reports = {}, {}
    for name, source in sources.items():
        reports[name] = build_range_table(source, tmp_path / f"{name}.sqlite", 0.5)
        tables[name] = rows(tmp_path / f"{name}.sqlite")
    assert [r.layout for r in reports.values()] == ["SIMPLE_CSV", "SIMPLE_CSV", "DwC-A", "Parquet", "DwC-A"]
    first = reports["SIMPLE_CSV"]
    assert first.kept > 4900 and sum(first.skipped.values()) > 40  # synthetic's 1 % malformed too
    for name, report in reports.items():
        assert tables[name] == tables["SIMPLE_CSV"], name
        same = ("rows", "kept", "skipped", "undated", "month_unusable", "species", "cells", "entries")
        assert {k: getattr(report, k) for k in same} == {k: getattr(first, k) for k in same}, name


def test_a_folder_of_parquet_files_and_their_tallies_merged_equal_one_file(tmp_path):
    """What --engine ray does (a tally per file, merged here), without Ray."""
    recs = records() + list(synthetic(3000, species=30, seed=5))
    folder = tmp_path / "occurrence.parquet"
    folder.mkdir()
    write_parquet(folder / "000000", recs[:1500])  # the snapshot's files have no extension
    write_parquet(folder / "000001", recs[1500:])
    (folder / "_SUCCESS").write_text("")
    whole = build_range_table(write_parquet(tmp_path / "all.parquet", recs), tmp_path / "one.sqlite", 1.0)
    parts = build_range_table(folder, tmp_path / "parts.sqlite", 1.0)
    assert parts.files == 2 and rows(tmp_path / "parts.sqlite") == rows(tmp_path / "one.sqlite")
    assert parts.skipped == whole.skipped

    merged = Tally(1.0)
    for file in sorted(folder.glob("0*")):
        merged.merge(tally_parquet(file, 1.0))
    single = tally_parquet(tmp_path / "all.parquet", 1.0)
    assert merged.kept == single.kept and merged.skipped == single.skipped
    mine, theirs = merged.rows_for_table(), single.rows_for_table()
    names = [merged.species.pairs(), single.species.pairs()]
    as_rows = [
        sorted(
            (
                (la, lo, mo, names[i][sp], n)
                for la, lo, mo, sp, n in zip(*(a.tolist() for a in t), strict=True)
            ),
            key=repr,
        )
        for i, t in enumerate((mine, theirs))
    ]
    assert as_rows[0] == as_rows[1]


def test_the_tables_cells_are_the_geo_priors(tmp_path):
    """Records on cell edges and anywhere land in the cell a photo at the same place asks for."""
    rng = random.Random(11)
    places = [(51.3, 0.25), (-0.0, -0.0), (90.0, 180.0), (-90.0, -180.0), (45.0, -0.1), (-33.87, 151.21)]
    places += [(rng.uniform(-90, 90), rng.uniform(-180, 180)) for _ in range(300)]
    for size in (0.1, 1.0, 7.0):
        lat, lon = np.array([p[0] for p in places]), np.array([p[1] for p in places])
        vector = cell_indices(lat, lon, size)
        assert [cell_index(a, b, size) for a, b in places] == list(
            zip(*(v.tolist() for v in vector), strict=True)
        )
    recs = [Occurrence.of(f"Aus b{i:03d}", None, a, b, 5) for i, (a, b) in enumerate(places)]
    table = tmp_path / "edges.sqlite"
    build_range_table(write_simple_csv(tmp_path / "edges.csv", recs), table, 0.1)
    reader = RangeTable(table, 0.1)
    for i, (a, b) in enumerate(places):
        found = reader.lookup(a, b, 5)
        assert not isinstance(found, str) and found.names.get(f"aus b{i:03d}") == 1, (a, b)  # type: ignore[union-attr]
        assert found.cell == Cell.containing(a, b, 0.1, 5)  # type: ignore[union-attr]
    reader.close()


def test_what_is_no_occurrence_download_is_refused_with_a_reason(tmp_path):
    table = tmp_path / "range.sqlite"
    cases: dict[str, Path] = {"no such file": tmp_path / "nothing.csv"}
    other = tmp_path / "other.csv"
    other.write_text("name\tlat\tlon\nDanaus plexippus\t40\t-75\n")
    cases["no decimalLatitude, decimalLongitude, species or speciesKey columns"] = other
    no_species = tmp_path / "nospecies.csv"
    no_species.write_text("decimalLatitude\tdecimalLongitude\n40\t-75\n")
    cases["no species or speciesKey column "] = no_species
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as archive:
        archive.writestr("readme.md", "nothing")
    cases["no meta.xml"] = empty_zip
    events = tmp_path / "events.zip"
    with zipfile.ZipFile(events, "w") as archive:
        archive.writestr(
            "meta.xml",
            '<archive xmlns="http://rs.tdwg.org/dwc/text/"><core rowType="http://rs.tdwg.org/dwc/terms/Event">'
            "<files><location>event.txt</location></files></core></archive>",
        )
    cases["no Occurrence core or extension"] = events
    columns = tmp_path / "columns.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"species": ["Danaus plexippus"], "lat": [40.0]}), columns)
    cases["no decimalLatitude, decimalLongitude columns"] = columns
    folder = tmp_path / "folder"
    folder.mkdir()
    cases["no Parquet files"] = folder
    for said, source in cases.items():
        with pytest.raises(NotOccurrences, match=said):
            build_range_table(source, table, 1.0)
        assert not table.exists()
    assert SIMPLE_CSV_COLUMNS[21:23] == ["decimalLatitude", "decimalLongitude"]


def test_nothing_kept_writes_nothing_and_says_so(tmp_path):
    absent = [Occurrence.of("Danaus plexippus", MONARCH, *PHILADELPHIA, 7, status="ABSENT")] * 3
    table = tmp_path / "range.sqlite"
    table.write_text("the previous table")
    with pytest.raises(EmptyTable) as refused:
        build_range_table(write_simple_csv(tmp_path / "occ.csv", absent), table, 1.0)
    assert refused.value.report.skipped["not_present"] == 3 and refused.value.report.kept == 0
    assert table.read_text() == "the previous table"  # untouched


def test_a_rebuild_replaces_the_table_whole(tmp_path):
    table = tmp_path / "range.sqlite"
    build_range_table(write_simple_csv(tmp_path / "a.csv", records()), table, 1.0)
    before = rows(table)
    lady = [Occurrence.of("Vanessa cardui", LADY, *LONDON, 5)]
    build_range_table(write_simple_csv(tmp_path / "b.csv", lady), table, 2.0)
    assert rows(table) == [(*cell_index(*LONDON, 2.0), 5, LADY, "vanessa cardui", 1)] != before
    assert float(meta(table)["cell_deg"]) == 2.0


def test_a_cell_size_outside_what_the_codes_hold_is_refused():
    for size in (0.001, 11.0):
        with pytest.raises(ValueError, match="cell size"):
            Tally(size)


def test_the_ray_engine_builds_the_same_table_from_parquet_files(tmp_path):
    pytest.importorskip("ray", reason="Ray is the optional extra .[ray]")
    recs = records() + list(synthetic(4000, species=30, seed=9))
    folder = tmp_path / "occurrence.parquet"
    folder.mkdir()
    for i in range(3):
        write_parquet(folder / f"{i:06d}", recs[i::3])
    local = build_range_table(folder, tmp_path / "local.sqlite", 1.0)
    on_ray = build_range_table(folder, tmp_path / "ray.sqlite", 1.0, engine="ray", workers=2)
    assert rows(tmp_path / "ray.sqlite") == rows(tmp_path / "local.sqlite")
    assert (on_ray.rows, on_ray.kept, on_ray.skipped, on_ray.files) == (
        local.rows,
        local.kept,
        local.skipped,
        3,
    )
    with pytest.raises(NotOccurrences, match="--engine ray reads Parquet"):
        build_range_table(
            write_simple_csv(tmp_path / "occ.csv", recs), tmp_path / "x.sqlite", 1.0, engine="ray"
        )
