"""The range table as the geo prior reads it (app/enrich/range_table.py, GEO_PRIOR_SOURCE=table):
a photo's month counts with its two neighbours (December beside January), undated records only
when no date is known, a place no record is near is 0 records (not an error), a table missing,
broken, rebuilt or of another cell size; then the prior on it (app/enrich/geo.py GeoPrior) and
the weighting (app/identification/steer.py GeoWeighting): labels matched by GBIF species key
where linked to GBIF, else by name (an NCBI taxid is never taken for a GBIF key), a model with no
taxonomy still weighed, geo=filter, GEO_PRIOR_SOURCE=off."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

import app.enrich.range_table as range_table
from app.core import Label
from app.enrich.geo import Cell, GeoPrior, GeoUnavailable, NearbyCounts, label_match, normalise_name, season
from app.enrich.range_table import RangeTable
from app.enrich.taxonomy import Taxon
from app.identification.steer import GeoWeighting
from app.services.range_build import build_range_table
from app.settings import GeoPriorSettings
from tests.support.occurrences import Occurrence, write_simple_csv

MONARCH, LADY, SWALLOWTAIL = 5133088, 1898286, 1938125
PHILADELPHIA, LONDON, NOWHERE = (40.2, -75.3), (51.5, -0.1), (-45.0, 100.0)  # NOWHERE: the Indian Ocean


def records() -> list[Occurrence]:
    months = {1: 1, 2: 2, 6: 10, 7: 20, 8: 30, 12: 4}  # monarchs per month near Philadelphia
    out = [
        Occurrence.of("Danaus plexippus", MONARCH, *PHILADELPHIA, m)
        for m, n in months.items()
        for _ in range(n)
    ]
    out += [Occurrence.of("Danaus plexippus", MONARCH, 40.7, -75.9)] * 5  # undated, same cell
    out += [Occurrence.of("Vanessa cardui", LADY, *PHILADELPHIA, 7)] * 3
    out += [Occurrence.of("Papilio machaon", None, *LONDON, 6)] * 2  # a name, no key
    out += [Occurrence.of("Vanessa cardui", LADY, *LONDON, 6)]
    return out


@pytest.fixture
def table(tmp_path: Path) -> Path:
    out = tmp_path / "range.sqlite"
    build_range_table(write_simple_csv(tmp_path / "occ.csv", records()), out, 1.0)
    return out


def settings(table: Path | None, **extra: object) -> GeoPriorSettings:
    return GeoPriorSettings(**{"source": "table", "table": table, **extra})  # type: ignore[arg-type]


def found(answer: NearbyCounts | GeoUnavailable) -> NearbyCounts:
    assert isinstance(answer, NearbyCounts), answer
    return answer


# --- the season --------------------------------------------------------------------------------


def test_the_season_is_the_month_and_its_neighbours_wrapping_the_year():
    assert season(7) == (6, 7, 8)
    assert season(1) == (1, 2, 12) and season(12) == (1, 11, 12)
    assert season(None) == ()
    assert all(len(season(m)) == 3 and m in season(m) for m in range(1, 13))


def test_a_month_counts_its_neighbours_and_undated_records_only_without_a_date(table):
    reader = RangeTable(table, 1.0)
    july = found(reader.lookup(*PHILADELPHIA, 7))
    assert july.counts == {MONARCH: 10 + 20 + 30, LADY: 3}
    assert july.names == {"danaus plexippus": 60, "vanessa cardui": 3}
    assert july.total == 63 and july.months == (6, 7, 8) and july.source == "table" and july.cache is None
    assert july.cell == Cell.containing(*PHILADELPHIA, 1.0, 7)  # the GBIF source's cell
    january = found(reader.lookup(*PHILADELPHIA, 1))  # December, January, February
    assert january.counts == {MONARCH: 4 + 1 + 2} and january.months == (1, 2, 12)
    december = found(reader.lookup(*PHILADELPHIA, 12))  # November, December, January
    assert december.counts == {MONARCH: 4 + 1}
    april = found(reader.lookup(40.9, -75.1, 4))  # the same cell, out of season
    assert april.counts == {} and april.total == 0
    undated = found(reader.lookup(*PHILADELPHIA, None))  # every month, and the undated records
    assert undated.counts == {MONARCH: 67 + 5, LADY: 3} and undated.months == ()
    reader.close()


def test_a_place_no_record_is_near_is_zero_records_not_an_error(table):
    reader = RangeTable(table, 1.0)
    for month in (None, 7):
        nowhere = found(reader.lookup(*NOWHERE, month))
        assert nowhere.counts == {} and nowhere.names == {} and nowhere.total == 0
        assert nowhere.records(MONARCH, ("danaus plexippus",)) == 0
    reader.close()


def test_a_species_is_found_by_key_or_by_name():
    names = {"danaus plexippus": 7, "aus bus": 2}
    counts = NearbyCounts(Cell(40, 41, -76, -75), {MONARCH: 7}, 9, None, names, "table", (6, 7, 8))
    assert counts.records(MONARCH, ()) == 7
    assert counts.records(None, ("danaus plexippus",)) == 7
    assert counts.records(123, ("aus bus",)) == 2  # a key the table lacks: the name
    assert counts.records(None, ("nobody here",)) == 0 and counts.records(None, ()) == 0
    gbif = NearbyCounts(Cell(40, 41, -76, -75), {MONARCH: 7}, 9, "hit")
    assert gbif.records(MONARCH, ()) == 7 and gbif.records(LADY, ()) == 0
    assert gbif.records(None, ("danaus plexippus",)) is None  # GBIF's counts are by key alone


def test_a_label_is_looked_up_by_its_gbif_key_and_its_names():
    gbif = Taxon(usageKey=MONARCH, speciesKey=MONARCH, rank="SPECIES", canonicalName="Danaus plexippus")
    assert label_match("Danaus plexippus", gbif) == (MONARCH, ("danaus plexippus",))
    renamed = Taxon(usageKey=1, speciesKey=LADY, rank="SPECIES", canonicalName="Vanessa cardui")
    assert label_match("Cynthia cardui", renamed) == (LADY, ("cynthia cardui", "vanessa cardui"))
    ncbi = Taxon.model_validate(
        {"usageKey": MONARCH, "rank": "SPECIES", "canonicalName": "Danaus plexippus", "source": "ncbi"}
    )
    assert label_match("Danaus plexippus", ncbi) == (None, ("danaus plexippus",))  # a taxid is no GBIF key
    assert label_match("  Danaus   Plexippus ", None) == (None, ("danaus plexippus",))
    assert normalise_name("VANESSA\tcardui") == "vanessa cardui"


# --- the file ------------------------------------------------------------------------------------


def test_a_missing_table_is_unavailable_then_used_once_built(tmp_path, caplog):
    path = tmp_path / "later.sqlite"
    reader = RangeTable(path, 1.0)
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            missing = reader.lookup(*PHILADELPHIA, 7)
            assert isinstance(missing, GeoUnavailable) and "build-range" in missing.reason
            assert str(tmp_path) not in missing.reason  # the answer names no server path
    assert sum("no geo prior from" in r.message for r in caplog.records) == 1  # said once
    assert reader.cached(*PHILADELPHIA, 7) is None
    build_range_table(write_simple_csv(tmp_path / "occ.csv", records()), path, 1.0)
    assert found(reader.lookup(*PHILADELPHIA, 7)).counts[MONARCH] == 60  # no restart
    reader.close()


@pytest.mark.parametrize("content", ["text", "sqlite", "format"])
def test_a_file_that_is_no_range_table_is_unavailable(tmp_path, content):
    path = tmp_path / "range.sqlite"
    if content == "text":
        path.write_text("species\tcount\n" * 100)
    else:
        with sqlite3.connect(path) as db:
            db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
            if content == "format":
                db.execute("INSERT INTO meta VALUES ('format', 'some other table 9'), ('cell_deg', '1.0')")
    answer = RangeTable(path, 1.0).lookup(*PHILADELPHIA, 7)
    assert isinstance(answer, GeoUnavailable) and "not a range table" in answer.reason


def test_a_rebuilt_table_is_read_without_a_restart(table, tmp_path, monkeypatch):
    reader = RangeTable(table, 1.0)
    assert found(reader.lookup(*LONDON, 6)).names == {"papilio machaon": 2, "vanessa cardui": 1}
    assert found(reader.cached(*LONDON, 6)).names["papilio machaon"] == 2  # type: ignore[arg-type]
    time.sleep(0.01)  # a new mtime even where the clock is coarse
    more = [Occurrence.of("Papilio machaon", None, *LONDON, 6)] * 9
    build_range_table(write_simple_csv(tmp_path / "more.csv", more), table, 1.0)
    monkeypatch.setattr(range_table, "_RECHECK_S", 0.0)  # time for the once-a-second check
    # The event loop's read touches no disk: it hands the cell to a worker thread's lookup ...
    assert reader.cached(*LONDON, 6) is None
    # ... whose stat sees the new file, and memory of the old one is forgotten.
    assert found(reader.lookup(*LONDON, 6)).names == {"papilio machaon": 9}
    reader.close()


def test_a_table_of_another_cell_size_is_read_with_its_own(tmp_path, caplog):
    path = tmp_path / "coarse.sqlite"
    build_range_table(write_simple_csv(tmp_path / "occ.csv", records()), path, 5.0)
    reader = RangeTable(path, 1.0)
    with caplog.at_level(logging.WARNING):
        answer = found(reader.lookup(43.0, -77.0, 7))  # 5-degree cell 40-45 / -80--75: Philadelphia's
    assert answer.counts[MONARCH] == 60 and answer.cell == Cell.containing(43.0, -77.0, 5.0, 7)
    assert any("cells of 5.0 degrees, GEO_PRIOR_CELL_DEG is 1.0" in r.message for r in caplog.records)
    reader.close()


def test_cached_cells_are_bounded_by_the_species_they_hold(table):
    reader = RangeTable(table, 1.0, cache_entries=2)
    found(reader.lookup(*PHILADELPHIA, 7))  # 2 species
    assert reader.cached(*PHILADELPHIA, 7) is not None
    found(reader.lookup(*LONDON, 6))  # 2 more: the oldest cell goes
    assert reader.cached(*PHILADELPHIA, 7) is None and reader.cached(*LONDON, 6) is not None
    reader.close()


# --- the prior and the weighting ---------------------------------------------------------------


def test_the_settings_name_the_source_and_the_table(monkeypatch, tmp_path):
    assert GeoPriorSettings().source == "gbif" and GeoPriorSettings().table is None  # today's default
    monkeypatch.setenv("GEO_PRIOR_SOURCE", "table")
    monkeypatch.setenv("GEO_PRIOR_TABLE", str(tmp_path / "range.sqlite"))
    read = GeoPriorSettings()
    assert read.source == "table" and read.table == tmp_path / "range.sqlite"
    monkeypatch.delenv("GEO_PRIOR_TABLE")
    with pytest.raises(ValidationError, match="GEO_PRIOR_TABLE"):
        GeoPriorSettings()
    with pytest.raises(ValidationError):
        GeoPriorSettings(source="ebird")  # type: ignore[arg-type]


def test_the_prior_reads_the_table_off_the_event_loop_then_from_memory(table, monkeypatch):
    reader = RangeTable(table, 1.0)
    prior = GeoPrior(None, settings(table), reader)  # type: ignore[arg-type]  # no GBIF client
    threads: list[str] = []
    lookup = reader.lookup

    def counted(*args: object) -> NearbyCounts | GeoUnavailable:
        import threading

        threads.append(threading.current_thread().name)
        return lookup(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(reader, "lookup", counted)

    async def run() -> list[NearbyCounts | GeoUnavailable]:
        return [
            await prior.counts(*PHILADELPHIA, 7),
            await prior.counts(40.9, -75.9, 7),
            await prior.counts(91, 0),
        ]

    first, same_cell, impossible = asyncio.run(run())
    assert found(first).counts[MONARCH] == 60 and found(same_cell) is first
    assert len(threads) == 1 and threads[0] != "MainThread"  # the disk on a worker, once
    assert isinstance(impossible, GeoUnavailable) and "latitude 91" in impossible.reason
    reader.close()


NAMES = ["Danaus plexippus", "Vanessa cardui", "Papilio machaon", "Libellula depressa", "background"]


def weigh(prior: GeoPrior, taxonomy: dict[str, Taxon], place: tuple[float, float], month: int | None,
          mode: str = "prior") -> tuple[np.ndarray, object]:  # fmt: skip
    labels = [Label(scientific_name=n) for n in NAMES]
    p = np.array([0.3, 0.3, 0.2, 0.1, 0.1], np.float32)
    return asyncio.run(GeoWeighting(prior).apply(p, labels, taxonomy, *place, month, 4, mode))  # type: ignore[arg-type]


def test_without_a_taxonomy_labels_are_weighed_by_name(table):
    prior = GeoPrior(None, settings(table), RangeTable(table, 1.0))  # type: ignore[arg-type]
    scores, outcome = weigh(prior, {}, PHILADELPHIA, 7)
    assert outcome.status == "applied" and outcome.source == "table" and outcome.months == (6, 7, 8)  # type: ignore[attr-defined]
    assert outcome.records.tolist() == [60, 3, 0, 0, 0]  # type: ignore[attr-defined]
    w = [0.1 + 0.9 * n / (n + 5.0) for n in (60, 3, 0, 0)]
    assert outcome.weights[:4].tolist() == pytest.approx(w)  # type: ignore[attr-defined]
    p = np.array([0.3, 0.3, 0.2, 0.1])
    np.testing.assert_allclose(scores[:4], p * w * 0.9 / (p * w).sum(), rtol=1e-6)
    assert scores[4] == pytest.approx(0.1)  # the background keeps its probability
    nowhere_scores, nowhere = weigh(prior, {}, NOWHERE, 7)
    assert nowhere.status == "applied" and nowhere.records.tolist() == [0] * 5  # type: ignore[attr-defined]
    assert nowhere.cell_records == 0  # type: ignore[attr-defined]
    np.testing.assert_allclose(nowhere_scores, [0.3, 0.3, 0.2, 0.1, 0.1], rtol=1e-6)  # all at the floor


def test_gbif_keys_match_where_linked_and_ncbi_taxids_never_do(table):
    prior = GeoPrior(None, settings(table), RangeTable(table, 1.0))  # type: ignore[arg-type]
    taxonomy = {
        # linked to GBIF under another name: found by the key
        "Danaus plexippus": Taxon(
            usageKey=MONARCH, speciesKey=MONARCH, rank="SPECIES", canonicalName="Danaus x"
        ),
        # NCBI's taxon whose taxid is the lady's GBIF key: not found by it, found by its name
        "Papilio machaon": Taxon.model_validate(
            {"usageKey": LADY, "rank": "SPECIES", "canonicalName": "Papilio machaon", "source": "ncbi"}
        ),
    }
    _, outcome = weigh(prior, taxonomy, LONDON, 6)
    assert outcome.records.tolist() == [0, 1, 2, 0, 0]  # type: ignore[attr-defined]


def test_geo_filter_keeps_the_species_the_table_recorded(table):
    prior = GeoPrior(None, settings(table), RangeTable(table, 1.0))  # type: ignore[arg-type]
    scores, outcome = weigh(prior, {}, PHILADELPHIA, 7, mode="filter")
    assert outcome.recorded.tolist() == [True, True, False, False, False]  # type: ignore[attr-defined]
    assert scores[2] == scores[3] == 0 and scores[:2].sum() == pytest.approx(0.9)


def test_a_missing_table_or_the_source_off_is_the_answer_without_the_prior(tmp_path):
    missing = GeoPrior(None, settings(tmp_path / "none.sqlite"), RangeTable(tmp_path / "none.sqlite", 1.0))  # type: ignore[arg-type]
    scores, outcome = weigh(missing, {}, PHILADELPHIA, 7)
    assert outcome.status == "unavailable" and outcome.source == "table"  # type: ignore[attr-defined]
    assert "build-range" in outcome.reason  # type: ignore[attr-defined]
    np.testing.assert_allclose(scores, [0.3, 0.3, 0.2, 0.1, 0.1])
    off = GeoPrior(None, GeoPriorSettings(source="off"))  # type: ignore[arg-type]
    scores, outcome = weigh(off, {}, PHILADELPHIA, 7)
    assert outcome.status == "off" and "GEO_PRIOR_SOURCE=off" in outcome.reason and outcome.source is None  # type: ignore[attr-defined]
    assert isinstance(asyncio.run(off.counts(*PHILADELPHIA, 7)), GeoUnavailable)
    gbif = GeoPrior(None, GeoPriorSettings())  # type: ignore[arg-type]
    _, outcome = weigh(gbif, {}, PHILADELPHIA, 7)  # GBIF is asked by key: nothing to ask with
    assert outcome.status == "not_linked" and outcome.source == "gbif"  # type: ignore[attr-defined]
    ncbi_only = {
        "Danaus plexippus": Taxon.model_validate({"usageKey": 1, "rank": "SPECIES", "source": "ncbi"})
    }
    _, outcome = weigh(gbif, ncbi_only, PHILADELPHIA, 7)
    assert outcome.status == "not_linked"  # type: ignore[attr-defined]
