"""GBIF occurrence downloads made up for tests and benchmarks, in the three layouts build-range
reads: SIMPLE_CSV (GBIF's 50 tab-separated columns, no quoting; zipped as GBIF hands it out, or
not), a Darwin Core Archive (meta.xml + occurrence.txt, in a zip) and Parquet with the public
snapshot's lower-case column names. The same ``Occurrence`` records give the same table in all
three.

``synthetic(n)`` makes many: ~``species`` species, each recorded around a few range centres
(clustered, as real records are along roads and towns), in a season around a peak month, a few
records undated; a share of them malformed in each of the ways build-range skips.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# GBIF's SIMPLE_CSV header, in GBIF's order.
# fmt: off
SIMPLE_CSV_COLUMNS = [
    "gbifID", "datasetKey", "occurrenceID", "kingdom", "phylum", "class", "order", "family", "genus",
    "species", "infraspecificEpithet", "taxonRank", "scientificName", "verbatimScientificName",
    "verbatimScientificNameAuthorship", "countryCode", "locality", "stateProvince", "occurrenceStatus",
    "individualCount", "publishingOrgKey", "decimalLatitude", "decimalLongitude",
    "coordinateUncertaintyInMeters", "coordinatePrecision", "elevation", "elevationAccuracy", "depth",
    "depthAccuracy", "eventDate", "day", "month", "year", "taxonKey", "speciesKey", "basisOfRecord",
    "institutionCode", "collectionCode", "catalogNumber", "recordNumber", "identifiedBy", "dateIdentified",
    "license", "rightsHolder", "recordedBy", "typeStatus", "establishmentMeans", "lastInterpreted",
    "mediaType", "issue",
]
# fmt: on
assert len(SIMPLE_CSV_COLUMNS) == 50
_AT = {name: i for i, name in enumerate(SIMPLE_CSV_COLUMNS)}
DATASET = "50c9509d-22c7-4a22-a47d-8c48425ef4a7"  # iNaturalist research-grade observations
DWC = "http://rs.tdwg.org/dwc/terms/"
GBIF_TERMS = "http://rs.gbif.org/terms/1.0/"


@dataclass(frozen=True)
class Occurrence:
    """One record as a download writes it: text fields as they would appear (``""``: empty)."""

    species: str
    species_key: str
    lat: str
    lon: str
    month: str = ""
    status: str = "PRESENT"
    issue: str = ""  # GBIF's issue flags, ";"-separated

    @classmethod
    def of(
        cls,
        species: str,
        key: int | None,
        lat: float | None,
        lon: float | None,
        month: int | None = None,
        status: str = "PRESENT",
        issue: str = "",
    ) -> Occurrence:
        def text(value: object) -> str:
            return "" if value is None else str(value)

        return cls(species, text(key), text(lat), text(lon), text(month), status, issue)

    def simple_csv_fields(self, number: int) -> list[str]:
        fields = [""] * len(SIMPLE_CSV_COLUMNS)
        genus = self.species.split(" ", 1)[0]
        values = {
            "gbifID": str(4_000_000_000 + number),
            "datasetKey": DATASET,
            "occurrenceID": f"https://www.inaturalist.org/observations/{number}",
            "kingdom": "Animalia",
            "genus": genus,
            "species": self.species,
            "taxonRank": "SPECIES" if self.species else "",
            "scientificName": f"{self.species} (Fake, 1900)" if self.species else "",
            "occurrenceStatus": self.status,
            "decimalLatitude": self.lat,
            "decimalLongitude": self.lon,
            "month": self.month,
            "year": "2021" if self.month else "",
            "speciesKey": self.species_key,
            "taxonKey": self.species_key,
            "basisOfRecord": "HUMAN_OBSERVATION",
            "license": "CC_BY_NC_4_0",
            "issue": self.issue,
        }
        for name, value in values.items():
            fields[_AT[name]] = value
        return fields


def simple_csv_text(records: Iterable[Occurrence], extra_lines: Sequence[str] = ()) -> str:
    lines = ["\t".join(SIMPLE_CSV_COLUMNS)]
    lines += ["\t".join(r.simple_csv_fields(i)) for i, r in enumerate(records)]
    lines += list(extra_lines)
    return "\n".join(lines) + "\n"


def write_simple_csv(
    path: Path, records: Iterable[Occurrence], *, zipped: bool = False, extra_lines: Sequence[str] = ()
) -> Path:
    """GBIF's SIMPLE_CSV download, as ``NNNN.csv`` inside a .zip when ``zipped``."""
    text = simple_csv_text(records, extra_lines)
    if zipped:
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("0012345-260101120000000.csv", text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


META_XML = """<?xml version="1.0" encoding="utf-8"?>
<archive xmlns="http://rs.tdwg.org/dwc/text/" metadata="metadata.xml">
  <core encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" fieldsEnclosedBy=""
        ignoreHeaderLines="1" rowType="http://rs.tdwg.org/dwc/terms/Occurrence">
    <files><location>occurrence.txt</location></files>
    <id index="0" />
{fields}
  </core>
</archive>
"""
# occurrence.txt's columns after the id, as GBIF's DwC-A download names their terms.
DWCA_TERMS = (
    (GBIF_TERMS, "gbifID"),
    (DWC, "basisOfRecord"),
    (DWC, "occurrenceStatus"),
    (DWC, "month"),
    (DWC, "decimalLatitude"),
    (DWC, "decimalLongitude"),
    (DWC, "scientificName"),
    (GBIF_TERMS, "species"),
    (GBIF_TERMS, "speciesKey"),
    (GBIF_TERMS, "issue"),
)


def write_dwca(path: Path, records: Iterable[Occurrence]) -> Path:
    """A Darwin Core Archive .zip: meta.xml, an occurrence core with the terms above, and a
    ``defaults`` field (meta.xml's way of giving every row one value) for the country."""
    fields = [f'    <field index="{i + 1}" term="{ns}{term}" />' for i, (ns, term) in enumerate(DWCA_TERMS)]
    fields.append(f'    <field term="{DWC}countryCode" default="US" />')
    rows = ["\t".join(["id", *(term for _, term in DWCA_TERMS)])]
    for i, r in enumerate(records):
        values = [str(4_000_000_000 + i), "HUMAN_OBSERVATION", r.status, r.month, r.lat, r.lon]
        rows.append(
            "\t".join([str(i), *values, f"{r.species} (Fake, 1900)", r.species, r.species_key, r.issue])
        )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("meta.xml", META_XML.format(fields="\n".join(fields)))
        archive.writestr("occurrence.txt", "\n".join(rows) + "\n")
        archive.writestr("metadata.xml", "<eml/>")
    return path


def write_parquet(path: Path, records: Sequence[Occurrence], row_group_size: int = 1000) -> Path:
    """The snapshot's columns and types: numbers as numbers (null where the text is empty or not
    a number), ``issue`` a list of strings."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    def number(text: str, kind: type) -> float | int | None:
        try:
            return kind(text) if text else None
        except ValueError:
            return None

    table = pa.table(
        {
            "gbifid": pa.array([4_000_000_000 + i for i in range(len(records))], pa.int64()),
            "species": pa.array([r.species or None for r in records], pa.string()),
            "specieskey": pa.array([number(r.species_key, int) for r in records], pa.int32()),
            "decimallatitude": pa.array([number(r.lat, float) for r in records], pa.float64()),
            "decimallongitude": pa.array([number(r.lon, float) for r in records], pa.float64()),
            "month": pa.array([number(r.month, int) for r in records], pa.int32()),
            "occurrencestatus": pa.array([r.status or None for r in records], pa.string()),
            "issue": pa.array(
                [r.issue.split(";") if r.issue else [] for r in records], pa.list_(pa.string())
            ),
        }
    )
    pq.write_table(table, path, row_group_size=row_group_size)
    return path


# --- many records --------------------------------------------------------------------------------

MALFORMED_SHARE = 0.01


def _synthetic_rows(n: int, species: int, seed: int) -> Iterator[list[tuple[str, str, str, str, str, str]]]:
    """Chunks of (species, speciesKey, lat, lon, month, status) text, made with numpy."""
    rng = np.random.default_rng(seed)
    names = [f"Genus{i // 7:04d} species{i:05d}" for i in range(species)]
    keys = [str(20_000_000 + i) for i in range(species)]
    popularity = 1.0 / np.arange(1, species + 1) ** 0.8  # a few common species, a long tail
    popularity /= popularity.sum()
    centres = rng.uniform([-50, -150], [65, 150], size=(species, 3, 2))  # three range centres each
    peaks = rng.integers(1, 13, size=species)
    chunk = 100_000
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        who = rng.choice(species, size=m, p=popularity)
        where = centres[who, rng.integers(0, 3, size=m)] + rng.normal(0, 2.5, size=(m, 2))
        lats = np.clip(where[:, 0], -89.9, 89.9).round(5).astype(str).tolist()
        lons = np.clip(where[:, 1], -179.9, 179.9).round(5).astype(str).tolist()
        months = ((peaks[who] - 1 + rng.integers(-2, 3, size=m)) % 12 + 1).astype(str)
        months[rng.random(m) < 0.03] = ""  # undated
        broken = np.flatnonzero(rng.random(m) < MALFORMED_SHARE).tolist()
        rows = [
            (names[w], keys[w], la, lo, mo, "PRESENT")
            for w, la, lo, mo in zip(who.tolist(), lats, lons, months.tolist(), strict=True)
        ]
        for i, kind in zip(broken, rng.integers(0, 4, size=len(broken)).tolist(), strict=True):
            name, key, la, lo, mo, status = rows[i]
            if kind == 0:
                la = ""  # no coordinates
            elif kind == 1:
                la = "91.5"  # out of range
            elif kind == 2:
                status = "ABSENT"
            else:
                name = key = ""  # no species
            rows[i] = (name, key, la, lo, mo, status)
        yield rows


def synthetic(n: int, species: int = 2000, seed: int = 7) -> Iterator[Occurrence]:
    """``n`` records: ~``species`` species, each around three range centres, in a season around
    its peak month, 3 % undated, 1 % malformed (no coordinates, out of range, absent, no species)."""
    for rows in _synthetic_rows(n, species, seed):
        yield from (Occurrence(*row) for row in rows)


def write_synthetic_simple_csv(path: Path, n: int, species: int = 2000, seed: int = 7) -> Path:
    """``synthetic(n)`` as an unzipped SIMPLE_CSV file, written fast (a line template)."""
    fields = Occurrence("Genus species", "{1}", "{2}", "{3}", "{4}", "{5}").simple_csv_fields(0)
    variable = {"species": "{0}", "genus": "", "scientificName": "", "gbifID": "", "occurrenceID": ""}
    for name, value in variable.items():
        fields[_AT[name]] = value
    fields[_AT["year"]] = "2021"
    template = "\t".join(fields) + "\n"
    with path.open("w", encoding="utf-8") as f:
        f.write("\t".join(SIMPLE_CSV_COLUMNS) + "\n")
        for rows in _synthetic_rows(n, species, seed):
            f.write("".join(template.format(*row) for row in rows))
    return path
