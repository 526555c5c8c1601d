"""The range table (GEO_PRIOR_SOURCE=table) against today's GBIF prior, side by side in one run:
build time and table size per million records, then the prior's cost per request.

    .venv/bin/python benchmarks/range_prior.py                     # 1 million records, ~1 minute
    .venv/bin/python benchmarks/range_prior.py --records 5000000   # the figures at 5 million

1. Records: ``--records`` synthetic SIMPLE_CSV records (tests/support/occurrences.py: ``--species``
   species, each around three range centres with a 2.5-degree spread, a season around a peak
   month, 3 % undated, 1 % malformed), written as GBIF's 50-column tab-separated file.
2. Build: ``build_range_table`` (what ``python -m app build-range`` runs) on that file, and on the
   same records as Parquet with the public snapshot's column names and types (converted first, by
   pyarrow, not timed): seconds and table MB, each also per million records read.
3. Per request: ``GeoWeighting.apply`` (what /v1/identify and the classifier endpoints call: the
   cell's counts, the labels matched, the weights, the blend) for a model whose labels are the
   ``--species`` species, linked to GBIF keys, at ``--cells`` of the table's busiest cells (each
   with its busiest month), ``--requests`` requests in a shuffled round over them:

     table, from memory     the cell read lately (the reader's memory: what most photos get)
     table, SQLite read     the first photo in a cell (a fresh reader: its memory empty; the file
                            in the OS page cache, as on a server that has run a while)
     gbif, cache hit        today's path when the GBIF cache is warm: the cell's occurrence search
                            answered from the SQLite cache (the local fake GBIF of tests/fakes,
                            serving the table's counts for the cell and month, filled it first)

   Medians and p95 in microseconds, and the ratios of the medians. (A GBIF cache miss is the
   network: ~0.3-1 s from api.gbif.org, bounded by GEO_PRIOR_TIMEOUT; the fake's loopback miss is
   printed for the record only.)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core import Label
from app.enrich.gbif import open_gbif
from app.enrich.geo import GeoPrior
from app.enrich.range_table import RangeTable
from app.enrich.taxonomy import Taxon
from app.identification.steer import GeoWeighting
from app.services.range_build import BuildReport, build_range_table
from app.settings import GbifSettings, GeoPriorSettings
from tests.fakes.gbif import FakeGbif
from tests.support.occurrences import write_synthetic_simple_csv

CELL_DEG = 1.0
KEY0 = 20_000_000  # tests/support/occurrences.py: species i has speciesKey KEY0 + i


def to_parquet(source: Path, out: Path) -> None:
    """The SIMPLE_CSV file as the snapshot's columns: lower-case names, numbers as numbers."""
    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    types = {"decimalLatitude": pa.float64(), "decimalLongitude": pa.float64(), "month": pa.int32(),
             "speciesKey": pa.int64(), "species": pa.string(), "occurrenceStatus": pa.string()}  # fmt: skip
    table = pacsv.read_csv(
        source,
        parse_options=pacsv.ParseOptions(delimiter="\t", quote_char=False),
        convert_options=pacsv.ConvertOptions(include_columns=list(types), column_types=types),
    )
    pq.write_table(table.rename_columns([c.lower() for c in table.column_names]), out, row_group_size=200_000)


def per_million(report: BuildReport) -> str:
    millions = report.rows / 1e6
    return (
        f"{report.seconds:6.1f} s, table {report.bytes / 1e6:6.1f} MB  =  {report.seconds / millions:5.1f} s "
        f"and {report.bytes / 1e6 / millions:5.1f} MB per million records  ({report.entries:,} counts, "
        f"{report.cells:,} cells, {report.species:,} species, {sum(report.skipped.values()):,} skipped)"
    )


def busiest(table: Path, cells: int) -> list[tuple[int, int, int, dict[int, int]]]:
    """(cell_lat, cell_lon, month, {speciesKey: records in that month}) of the busiest cells."""
    with sqlite3.connect(table) as db:
        top = db.execute(
            "SELECT cell_lat, cell_lon, month FROM counts WHERE month > 0 GROUP BY cell_lat, cell_lon, month "
            "ORDER BY SUM(n) DESC"
        ).fetchall()
        chosen: dict[tuple[int, int], int] = {}
        for lat, lon, month in top:
            chosen.setdefault((lat, lon), month)
            if len(chosen) == cells:
                break
        out = []
        for (lat, lon), month in chosen.items():
            counts = db.execute(
                "SELECT s.species_key, c.n FROM counts c JOIN species s ON s.id = c.species "
                "WHERE c.cell_lat = ? AND c.cell_lon = ? AND c.month = ? AND s.species_key IS NOT NULL",
                (lat, lon, month),
            ).fetchall()
            out.append((lat, lon, month, dict(counts)))
    return out


def stats(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1e6, ordered[int(0.95 * (len(ordered) - 1))] * 1e6


async def timed(calls: list[Callable[[], Awaitable[object]]]) -> list[float]:
    out = []
    for call in calls:
        started = time.perf_counter()
        await call()
        out.append(time.perf_counter() - started)
    return out


async def per_request(args: argparse.Namespace, table: Path, work: Path) -> dict[str, list[float]]:
    places = busiest(table, args.cells)
    labels = [Label(scientific_name=f"Genus{i // 7:04d} species{i:05d}") for i in range(args.species)]
    taxonomy = {
        label.scientific_name: Taxon(usageKey=KEY0 + i, speciesKey=KEY0 + i, rank="SPECIES",
                                     canonicalName=label.scientific_name)
        for i, label in enumerate(labels)
    }  # fmt: skip
    rng = random.Random(args.seed)
    p = np.random.default_rng(args.seed).dirichlet(np.ones(len(labels))).astype(np.float32)
    order = [places[i % len(places)] for i in range(args.requests)]
    rng.shuffle(order)

    def at(lat: int, lon: int) -> tuple[float, float]:
        return (lat + 0.5) * CELL_DEG, (lon + 0.5) * CELL_DEG

    def calls(weighting: GeoWeighting, where: list[tuple[int, int, int, dict[int, int]]]) -> list:  # type: ignore[type-arg]
        return [
            (lambda la=la, lo=lo, m=m: weighting.apply(p, labels, taxonomy, *at(la, lo), m, None, "prior"))
            for la, lo, m, _ in where
        ]

    results: dict[str, list[float]] = {}
    table_settings = GeoPriorSettings(source="table", table=table, cell_deg=CELL_DEG)
    reader = RangeTable(table, CELL_DEG)
    warm = GeoWeighting(GeoPrior(None, table_settings, reader))  # type: ignore[arg-type]
    await timed(calls(warm, places))  # every cell read once: now in memory
    results["table, from memory"] = await timed(calls(warm, order))
    reader.close()
    cold: list[float] = []
    for _ in range(max(1, args.requests // len(places) // 4)):
        fresh = RangeTable(table, CELL_DEG)
        weighting = GeoWeighting(GeoPrior(None, table_settings, fresh))  # type: ignore[arg-type]
        await weighting.apply(p, labels, taxonomy, 0.5, 0.5, None, None, "prior")  # opened, not timed
        cold += await timed(calls(weighting, places))
        fresh.close()
    results["table, SQLite read"] = cold

    with FakeGbif() as fake:
        fake.occurrences = [
            (la * CELL_DEG, (la + 1) * CELL_DEG, lo * CELL_DEG, (lo + 1) * CELL_DEG, m, counts)
            for la, lo, m, counts in places
        ]
        gbif_settings = GbifSettings(api_url=fake.base_url, cache_path=work / "gbif.sqlite")
        async with open_gbif(gbif_settings) as client:
            weighting = GeoWeighting(GeoPrior(client, GeoPriorSettings(cell_deg=CELL_DEG)))
            results["gbif, miss (loopback fake)"] = await timed(calls(weighting, places))
            results["gbif, cache hit"] = await timed(calls(weighting, order))
        assert sum(fake.occurrence_hits.values()) == len(places), fake.occurrence_hits  # hits never asked
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--records", type=int, default=1_000_000, help="synthetic records")
    parser.add_argument("--species", type=int, default=2000, help="species in the records (and the labels)")
    parser.add_argument("--cells", type=int, default=200, help="cells the requests are spread over")
    parser.add_argument("--requests", type=int, default=2000, help="requests per timed path")
    parser.add_argument("--no-parquet", action="store_true", help="skip the Parquet build")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="range-bench-") as tmp:
        work = Path(tmp)
        what = f"{args.records:,} synthetic SIMPLE_CSV records of {args.species:,} species"
        print(f"range table benchmark: {what}, {CELL_DEG:g}-degree cells, {os.cpu_count()} cores")
        started = time.perf_counter()
        source = write_synthetic_simple_csv(work / "occurrences.csv", args.records, args.species, args.seed)
        written = time.perf_counter() - started
        print(f"records: written in {written:.1f} s ({source.stat().st_size / 1e6:.0f} MB)")
        table = work / "range.sqlite"
        print(f"build SIMPLE_CSV: {per_million(build_range_table(source, table, CELL_DEG))}")
        if not args.no_parquet:
            to_parquet(source, work / "occurrences.parquet")
            parquet = build_range_table(work / "occurrences.parquet", work / "range-parquet.sqlite", CELL_DEG)
            print(f"build Parquet:    {per_million(parquet)}")
        source.unlink()

        results = asyncio.run(per_request(args, table, work))
    print(f"prior per request (GeoWeighting.apply: {args.species:,} labels linked to GBIF keys, "
          f"{args.cells} cells, month given):")  # fmt: skip
    medians = {}
    for name, samples in results.items():
        median, p95 = stats(samples)
        medians[name] = median
        print(f"  {name:28s} median {median:8.0f} us   p95 {p95:8.0f} us   ({len(samples)} requests)")
    hit = medians["gbif, cache hit"]
    print(
        f"ratios: gbif cache hit / table from memory {hit / medians['table, from memory']:.1f}x, "
        f"gbif cache hit / table SQLite read {hit / medians['table, SQLite read']:.1f}x"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
