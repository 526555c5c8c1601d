"""build-range: a GBIF occurrence download -> the range table the geo prior reads offline
(``GEO_PRIOR_SOURCE=table``; the file's layout is in app/enrich/range_table.py).

What it reads, recognised by content, not by name:

- a SIMPLE_CSV download (GBIF's "simple" format: tab-separated, a header line, no quoting, the
  columns ``species``, ``speciesKey``, ``decimalLatitude``, ``decimalLongitude``, ``month``,
  ``occurrenceStatus``, ``issue`` among ~50), as the .zip GBIF hands out or unzipped;
- a Darwin Core Archive (the .zip or its folder): ``meta.xml`` names the occurrence file (the
  core, or an extension) and which column holds which term; the same terms are read;
- Parquet: a file or a folder of files with the columns of GBIF's public snapshot (the same
  names in lower case: ``specieskey``, ``decimallatitude``, ``issue`` as a list ...), read in
  batches of columns. ``--engine ray`` tallies each file in its own Ray task and adds the
  tallies up here: the planet-scale build (the snapshot is ~2,000 files).

Every format streams: a batch of records at a time is parsed and added to a tally of counts
per (species, cell, month), which is what is held in memory (at most species x cells x 13
numbers, compacted as it grows), then written in one transaction into a new file that replaces
``--out`` at once (a server reading the old one sees either).

A record is kept when it is a presence (``occurrenceStatus`` PRESENT, or empty: GBIF reads a
record without a status as present), names a species (``species`` or ``speciesKey``), has
coordinates that parse and lie in [-90, 90] x [-180, 180], and carries none of the issues for
which GBIF sets ``hasGeospatialIssue`` (what the live prior asks GBIF to leave out). Anything
else is counted under its reason and skipped, never fatal; so is a text line with the wrong
number of fields. The month: 1-12 is counted in that month; an empty one counts the record as
undated (month 0), and so does one that is no month 1-12 (it is counted as ``month_unusable``:
the place is still evidence).

The cells are the geo prior's (``app.enrich.geo.cell_indices``, the same arithmetic as for a
photo), of ``--cell-deg`` degrees (default ``GEO_PRIOR_CELL_DEG``).
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import importlib
import io
import sqlite3
import sys
import time
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from operator import itemgetter
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import numpy.typing as npt

from app.enrich.geo import cell_index, cell_indices, normalise_name
from app.enrich.range_table import FORMAT

Layout = Literal["SIMPLE_CSV", "DwC-A", "Parquet"]
Engine = Literal["local", "ray"]
Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Flags = npt.NDArray[np.bool_]

# Why a record was left out, in the order the checks run (a record counts under the first).
SKIP_REASONS = {
    "malformed_row": "a line with the wrong number of fields",
    "not_present": "occurrenceStatus other than PRESENT (an absence record)",
    "no_species": "no species name or speciesKey",
    "no_coordinates": "no decimalLatitude/decimalLongitude, or not a number",
    "coordinates_out_of_range": "latitude outside [-90, 90] or longitude outside [-180, 180]",
    "geospatial_issue": "an issue GBIF sets hasGeospatialIssue for (zero, invalid, out-of-range "
    "coordinates, or not in the country given)",
}
# GBIF's OccurrenceIssue.GEOSPATIAL_RULES: the live prior asks hasGeospatialIssue=false.
GEOSPATIAL_ISSUES = frozenset(
    {"ZERO_COORDINATE", "COORDINATE_INVALID", "COORDINATE_OUT_OF_RANGE", "COUNTRY_COORDINATE_MISMATCH"}
)
# The columns read (lower case: SIMPLE_CSV's and DwC's camelCase, the snapshot's lower case).
LAT, LON, SPECIES, KEY, MONTH, STATUS, ISSUE = (
    "decimallatitude",
    "decimallongitude",
    "species",
    "specieskey",
    "month",
    "occurrencestatus",
    "issue",
)
WANTED = (LAT, LON, SPECIES, KEY, MONTH, STATUS, ISSUE)
BATCH = 65_536
_COMPACT_AT = 4_000_000  # tally entries held before they are merged
_MONTHS = 13  # 0 = no usable month, 1-12


class NotOccurrences(ValueError):
    """The input is no occurrence download this reads (the message says what it found)."""


@dataclass
class BuildReport:
    source: Path
    out: Path
    layout: Layout
    cell_deg: float
    files: int = 0
    rows: int = 0  # records (and malformed lines) read
    kept: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    undated: int = 0  # kept without a month (empty), as month 0
    month_unusable: int = 0  # kept as month 0: a month that is no 1-12
    species: int = 0
    cells: int = 0
    entries: int = 0  # rows of counts written
    seconds: float = 0.0
    bytes: int = 0

    def lines(self) -> list[str]:
        """What build-range prints: what it read, kept, skipped and wrote."""
        out = [
            f"read {self.rows:,} records from {self.source} ({self.layout}, {self.files} file"
            f"{'s' if self.files != 1 else ''}) in {self.seconds:.1f} s",
            f"kept {self.kept:,} records of {self.species:,} species in {self.cells:,} cells of "
            f"{self.cell_deg:g} degrees: {self.entries:,} counts per species, cell and month",
            f"  undated, as month 0 (counted for photos without a date): {self.undated:,}",
            f"  a month that is no 1-12, kept as undated: {self.month_unusable:,}",
            f"skipped {sum(self.skipped.values()):,} records:",
        ]
        out += [
            f"  {reason}: {self.skipped.get(reason, 0):,} ({why})" for reason, why in SKIP_REASONS.items()
        ]
        if self.bytes:
            out.append(f"wrote {self.out} ({self.bytes / 1e6:.1f} MB)")
        return out


# --- the parsed records, whatever the format -------------------------------------------------


@dataclass
class Batch:
    """Records parsed into arrays: ``species`` a tally's id (-1: none), ``lat``/``lon`` NaN when
    absent or not a number, ``month`` 1-12, 0 when empty, -1 when not a month."""

    species: Ints
    lat: Floats
    lon: Floats
    month: Ints
    present: Flags
    geo_issue: Flags
    malformed: int = 0

    def __len__(self) -> int:
        return len(self.species)


class SpeciesIds:
    """(GBIF speciesKey, normalised name) -> a small id, the table's ``species`` rows."""

    def __init__(self) -> None:
        self.ids: dict[tuple[int | None, str], int] = {}
        self._raw: dict[tuple[str, str], int] = {}

    def id_of(self, key: int | None, name: str) -> int:
        if key is None and not name:
            return -1
        found = self.ids.get((key, name))
        if found is None:
            found = self.ids[(key, name)] = len(self.ids)
        return found

    def raw(self, key_text: str, name_text: str) -> int:
        """``id_of`` from a text row's fields, remembered per raw pair (a download repeats them)."""
        found = self._raw.get((key_text, name_text))
        if found is None:
            found = self._raw[(key_text, name_text)] = self.id_of(_int(key_text), normalise_name(name_text))
        return found

    def pairs(self) -> list[tuple[int | None, str]]:
        return list(self.ids)  # in id order: dicts keep insertion order


def _int(text: str) -> int | None:
    try:
        return int(text)
    except ValueError:
        return None


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return np.nan


def _month(text: str) -> int:
    if not text:
        return 0
    try:
        month = int(text)
    except ValueError:
        return -1
    return month if 1 <= month <= 12 else -1


def _present(status: str) -> bool:
    return not status or status == "PRESENT" or status.strip().upper() in ("", "PRESENT")


def _geo_issue(issues: str) -> bool:
    return bool(issues) and any(flag.strip() in GEOSPATIAL_ISSUES for flag in issues.split(";"))


# --- the tally ---------------------------------------------------------------------------------


class Tally:
    """Counts per (species, cell, month) as sorted int64 codes with their counts: compact where a
    dictionary of tuples would take ~10 times the memory."""

    def __init__(self, cell_deg: float) -> None:
        if not 0.01 <= cell_deg <= 10:
            raise ValueError(f"cell size {cell_deg} is not in [0.01, 10] degrees")
        self.cell_deg = cell_deg
        self.lat0, lat_last = cell_index(-90.0, 0.0, cell_deg)[0], cell_index(90.0, 0.0, cell_deg)[0]
        self.lon0, lon_last = cell_index(0.0, -180.0, cell_deg)[1], cell_index(0.0, 180.0, cell_deg)[1]
        self.n_lon = lon_last - self.lon0 + 1
        self.slots = (lat_last - self.lat0 + 1) * self.n_lon * _MONTHS  # codes per species
        self.species = SpeciesIds()
        self.rows = self.kept = self.undated = self.month_unusable = 0
        self.skipped: Counter[str] = Counter()
        self._codes: list[Ints] = []
        self._counts: list[Ints] = []
        self._pending = 0

    def add(self, batch: Batch) -> None:
        self.rows += len(batch) + batch.malformed
        self.skipped["malformed_row"] += batch.malformed
        left = np.ones(len(batch), dtype=bool)
        finite = np.isfinite(batch.lat) & np.isfinite(batch.lon)
        inside = (np.abs(batch.lat) <= 90) & (np.abs(batch.lon) <= 180)
        for reason, bad in (
            ("not_present", ~batch.present),
            ("no_species", batch.species < 0),
            ("no_coordinates", ~finite),
            ("coordinates_out_of_range", ~inside),
            ("geospatial_issue", batch.geo_issue),
        ):
            hit = left & bad
            self.skipped[reason] += int(hit.sum())
            left &= ~hit
        if not left.any():
            return
        month = batch.month[left]
        self.undated += int((month == 0).sum())
        self.month_unusable += int((month < 0).sum())
        month = np.maximum(month, 0)
        lat_i, lon_i = cell_indices(batch.lat[left], batch.lon[left], self.cell_deg)
        slot = ((lat_i - self.lat0) * self.n_lon + (lon_i - self.lon0)) * _MONTHS + month
        if len(self.species.ids) * self.slots >= 2**63:
            raise ValueError("too many species for int64 codes at this cell size: use larger cells")
        codes = batch.species[left] * self.slots + slot
        self.kept += len(codes)
        unique, counts = np.unique(codes, return_counts=True)
        self._push(unique, counts.astype(np.int64))

    def merge(self, other: Tally) -> None:
        """Another tally's counts (a Ray task's, over another file), its species ids mapped to ours."""
        assert other.cell_deg == self.cell_deg
        self.rows += other.rows
        self.kept += other.kept
        self.undated += other.undated
        self.month_unusable += other.month_unusable
        self.skipped.update(other.skipped)
        mapping = np.array([self.species.id_of(key, name) for key, name in other.species.pairs()], np.int64)
        codes, counts = other.totals()
        if len(codes):
            self._push(mapping[codes // other.slots] * self.slots + codes % other.slots, counts)

    def totals(self) -> tuple[Ints, Ints]:
        """(codes, counts), each code once, ascending."""
        self._compact()
        if not self._codes:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return self._codes[0], self._counts[0]

    def rows_for_table(self) -> tuple[Ints, Ints, Ints, Ints, Ints]:
        """(cell_lat, cell_lon, month, species, n) in the table's key order (cell, month, species)."""
        codes, counts = self.totals()
        species, slot = np.divmod(codes, self.slots)
        cell, month = np.divmod(slot, _MONTHS)
        lat_i, lon_i = np.divmod(cell, self.n_lon)
        order = np.lexsort((species, month, cell))
        return lat_i[order] + self.lat0, lon_i[order] + self.lon0, month[order], species[order], counts[order]

    def _push(self, codes: Ints, counts: Ints) -> None:
        self._codes.append(codes)
        self._counts.append(counts)
        self._pending += len(codes)
        # Merged when what came since the last merge outgrows the merged tally itself (or the
        # floor): each entry is merged O(log n) times, not once per batch of a big download.
        if self._pending > max(_COMPACT_AT, len(self._codes[0]) if len(self._codes) > 1 else 0):
            self._compact()

    def _compact(self) -> None:
        if len(self._codes) <= 1:
            return
        codes, inverse = np.unique(np.concatenate(self._codes), return_inverse=True)
        counts = np.bincount(inverse, weights=np.concatenate(self._counts)).astype(np.int64)
        self._codes, self._counts, self._pending = [codes], [counts], 0


# --- text: SIMPLE_CSV and Darwin Core Archives -------------------------------------------------


@dataclass(frozen=True)
class TextLayout:
    """Where the wanted columns are in a text file's rows (``None``: absent; ``defaults`` stand
    in for DwC-A fields that meta.xml gives a value, not a column)."""

    index: dict[str, int | None]
    width: int | None  # SIMPLE_CSV: every row has exactly the header's fields; None: at least
    defaults: dict[str, str]

    @property
    def tail(self) -> tuple[str, ...]:
        """What ``text_rows`` puts after each row's fields: "" (for the columns absent), then
        the defaults."""
        return ("", *self.defaults.values())


def _require(columns: Iterable[str], where: str) -> None:
    have = set(columns)
    needed = [name for name, c in (("decimalLatitude", LAT), ("decimalLongitude", LON)) if c not in have]
    if not have & {SPECIES, KEY}:
        needed.append("species or speciesKey")
    if needed:
        raise NotOccurrences(
            f"{where} has no {', '.join(needed)} column{'s' if len(needed) > 1 else ''} (any case): "
            "not a GBIF occurrence download (SIMPLE_CSV, a Darwin Core Archive or GBIF's Parquet snapshot)"
        )


def text_batches(
    rows: Iterator[list[str]], layout: TextLayout, species: SpeciesIds, size: int = BATCH
) -> Iterator[Batch]:
    """Batches of parsed records from a text file's rows as ``text_rows`` gives them (with the
    layout's ``tail`` after the file's fields), the header already read."""
    extra = len(layout.tail)
    need = max(i for i in layout.index.values() if i is not None) + 1
    # Every field in one C call: a column the file lacks reads the tail (its default, or "").
    slots = {name: j - extra for j, name in enumerate(layout.defaults, start=1)}

    def at(name: str) -> int:
        i = layout.index.get(name)
        return i if i is not None else slots.get(name, -extra)

    fields = itemgetter(at(LAT), at(LON), at(SPECIES), at(KEY), at(MONTH), at(STATUS), at(ISSUE))
    width = layout.width
    species_id = species.raw
    months_known = {"": 0, **{str(m): m for m in range(1, 13)}, **{f"0{m}": m for m in range(1, 10)}}
    while True:
        ids: list[int] = []
        lats: list[float] = []
        lons: list[float] = []
        months: list[int] = []
        present: list[bool] = []
        issues: list[bool] = []
        malformed = 0
        for row in rows:
            n = len(row) - extra
            if (n != width) if width is not None else n < need:
                if n > 1 or row[0]:  # a blank line is no record
                    malformed += 1
                continue
            lat, lon, name, key, month, status, issue = fields(row)
            ids.append(species_id(key, name))
            try:
                lats.append(float(lat))
            except ValueError:
                lats.append(np.nan)
            try:
                lons.append(float(lon))
            except ValueError:
                lons.append(np.nan)
            number = months_known.get(month)
            months.append(number if number is not None else _month(month.strip()))
            present.append(status == "PRESENT" or _present(status))
            issues.append(bool(issue) and _geo_issue(issue))
            if len(ids) >= size:
                break
        if not ids and not malformed:
            return
        yield Batch(
            np.array(ids, np.int64),
            np.array(lats, np.float64),
            np.array(lons, np.float64),
            np.array(months, np.int64),
            np.array(present, bool),
            np.array(issues, bool),
            malformed,
        )
        if len(ids) < size:
            return


def text_rows(stream: IO[str], delimiter: str, quote: str, tail: Sequence[str]) -> Iterator[list[str]]:
    """A text file's rows, each followed by ``tail``. Without quoting (GBIF's SIMPLE_CSV and
    DwC-A downloads) a line is its fields, split at twice the csv module's speed; with quoting,
    the csv module, a line it refuses standing as one malformed row."""
    if not quote:
        suffix = "".join(delimiter + value for value in tail)
        return ((line.rstrip("\r\n") + suffix).split(delimiter) for line in stream)
    csv.field_size_limit(sys.maxsize)  # a long remark is no reason to stop
    reader = csv.reader(stream, delimiter=delimiter, quotechar=quote)
    return (row + list(tail) for row in tolerant(reader))


def _text(binary: IO[bytes], encoding: str = "utf-8") -> io.TextIOWrapper:
    return io.TextIOWrapper(binary, encoding=encoding, errors="replace", newline="")


def simple_csv_rows(stream: IO[str], where: str) -> tuple[TextLayout, Iterator[list[str]]]:
    """The layout from the header line, and the rest of the rows. GBIF writes tabs and no
    quoting (a quote is part of the field); a comma-separated file with quotes is read too."""
    header = stream.readline()
    tab = "\t" in header or "," not in header
    names = header.rstrip("\r\n").split("\t") if tab else next(csv.reader([header]))
    columns = {name.strip().lower(): i for i, name in enumerate(names)}
    _require(columns, where)
    layout = TextLayout({c: columns.get(c) for c in WANTED}, len(names), {})
    return layout, text_rows(stream, "\t" if tab else ",", "" if tab else '"', layout.tail)


_DWC = "{http://rs.tdwg.org/dwc/text/}"


@dataclass(frozen=True)
class DwcFile:
    location: str
    delimiter: str
    quote: str
    skip: int
    encoding: str
    layout: TextLayout


def _unescape(text: str) -> str:
    return text.replace("\\t", "\t").replace("\\n", "\n").replace("\\r", "\r")


def dwc_occurrences(meta_xml: bytes, where: str) -> DwcFile:
    """The occurrence file meta.xml describes (the core, else an extension) and its columns,
    found by their terms' names (``.../dwc/terms/decimalLatitude``, ``.../gbif/terms/1.0/species``)."""
    try:
        root = ET.fromstring(meta_xml)
    except ET.ParseError as exc:
        raise NotOccurrences(f"{where}: meta.xml is not XML ({exc})") from exc
    tables = [*root.iter(f"{_DWC}core"), *root.iter(f"{_DWC}extension")]
    table = next((t for t in tables if t.get("rowType", "").rstrip("/").endswith("/Occurrence")), None)
    if table is None:
        raise NotOccurrences(f"{where}: the archive has no Occurrence core or extension")
    location = table.findtext(f"{_DWC}files/{_DWC}location")
    if not location:
        raise NotOccurrences(f"{where}: meta.xml names no occurrence file")
    index: dict[str, int | None] = {}
    defaults: dict[str, str] = {}
    for node in table.iter(f"{_DWC}field"):
        term = node.get("term", "").rstrip("/").rsplit("/", 1)[-1].rsplit("#", 1)[-1].lower()
        if term not in WANTED:
            continue
        if node.get("index") is not None:
            index[term] = int(node.get("index", "0"))
        elif node.get("default") is not None:
            defaults[term] = node.get("default", "")
    _require([*index, *defaults], f"{where} ({location})")
    return DwcFile(
        location=location,
        delimiter=_unescape(table.get("fieldsTerminatedBy", ",")),
        quote=_unescape(table.get("fieldsEnclosedBy", '"')),
        skip=int(table.get("ignoreHeaderLines", "0")),
        encoding=table.get("encoding", "UTF-8"),
        layout=TextLayout({c: index.get(c) for c in WANTED}, None, defaults),
    )


def dwc_rows(stream: IO[str], spec: DwcFile) -> Iterator[list[str]]:
    rows = text_rows(stream, spec.delimiter, spec.quote, spec.layout.tail)
    for _ in range(spec.skip):
        next(rows, None)
    return rows


_UNREADABLE = ["\0unreadable line"]  # one field: fails every layout's width, counted as malformed


def tolerant(reader: Iterator[list[str]]) -> Iterator[list[str]]:
    """The rows, a line the csv module refuses (an unclosed quote running past the field size
    limit, say) standing as one malformed row: the reader goes on at the next line."""
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error:
            yield list(_UNREADABLE)


# --- Parquet --------------------------------------------------------------------------------------


def _arrow() -> Any:
    """pyarrow, with .compute and .parquet (imported by name: it ships no type hints)."""
    try:
        pyarrow = importlib.import_module("pyarrow")
        importlib.import_module("pyarrow.compute")
        importlib.import_module("pyarrow.parquet")
    except ImportError as exc:
        raise NotOccurrences(
            "reading Parquet needs pyarrow: pip install pyarrow (or the 'ray' extra)"
        ) from exc
    return pyarrow


def parquet_columns(path: Path) -> dict[str, str]:
    """The wanted columns' names as the file spells them (the snapshot: lower case)."""
    pa = _arrow()
    try:
        names = pa.parquet.ParquetFile(path).schema_arrow.names
    except (OSError, pa.ArrowException) as exc:
        raise NotOccurrences(f"{path}: not a readable Parquet file ({exc})") from exc
    columns = {name.lower(): name for name in names if name.lower() in WANTED}
    _require(columns, str(path))
    return columns


def _floats(pa: Any, column: Any, n: int) -> Floats:
    if column is None:
        return np.full(n, np.nan)
    if (
        pa.types.is_floating(column.type)
        or pa.types.is_integer(column.type)
        or pa.types.is_decimal(column.type)
    ):
        return np.asarray(
            pa.compute.cast(column, pa.float64()).fill_null(np.nan).to_numpy(zero_copy_only=False)
        )
    return np.array([np.nan if v is None else _float(str(v)) for v in column.to_pylist()], np.float64)


def _months(pa: Any, column: Any, n: int) -> Ints:
    if column is None:
        return np.zeros(n, np.int64)
    if pa.types.is_integer(column.type):
        values = np.asarray(column.fill_null(0).to_numpy(zero_copy_only=False), np.int64)
        return np.where((values == 0) | ((values >= 1) & (values <= 12)), values, -1)
    return np.array([0 if v is None else _month(str(v).strip()) for v in column.to_pylist()], np.int64)


def _statuses(pa: Any, column: Any, n: int) -> Flags:
    if column is None:
        return np.ones(n, bool)
    text = pa.compute.utf8_upper(pa.compute.utf8_trim_whitespace(pa.compute.cast(column, pa.string())))
    present = pa.compute.or_(pa.compute.equal(text, "PRESENT"), pa.compute.equal(text, ""))
    return np.asarray(present.fill_null(True).to_numpy(zero_copy_only=False), bool)


def _issues(pa: Any, column: Any, n: int) -> Flags:
    flags = np.zeros(n, bool)
    if column is None:
        return flags
    if pa.types.is_list(column.type) or pa.types.is_large_list(column.type):
        values = pa.compute.list_flatten(column)
        parents = np.asarray(pa.compute.list_parent_indices(column).to_numpy(zero_copy_only=False))
        hit = pa.compute.is_in(
            pa.compute.cast(values, pa.string()), value_set=pa.array(sorted(GEOSPATIAL_ISSUES))
        )
        flags[parents[np.asarray(hit.fill_null(False).to_numpy(zero_copy_only=False), bool)]] = True
        return flags
    return np.array([v is not None and _geo_issue(str(v)) for v in column.to_pylist()], bool)


def _species_ids(pa: Any, names: Any, keys: Any, n: int, ids: SpeciesIds) -> Ints:
    """Per record, its (key, name) pair's id: each distinct pair of the batch looked up once."""
    if names is None:
        name_codes, dictionary = np.zeros(n, np.int64), [""]
    else:
        encoded = names if pa.types.is_dictionary(names.type) else pa.compute.dictionary_encode(names)
        name_codes = np.asarray(encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False), np.int64) + 1
        dictionary = ["", *(normalise_name(str(v)) for v in encoded.dictionary.to_pylist())]
    if keys is None:
        key_values = np.full(n, -1, np.int64)
    elif pa.types.is_integer(keys.type):
        key_values = np.asarray(keys.fill_null(-1).to_numpy(zero_copy_only=False), np.int64)
    else:
        key_values = np.array(
            [-1 if v is None or (k := _int(str(v))) is None else k for v in keys.to_pylist()], np.int64
        )
    distinct_keys, key_codes = np.unique(key_values, return_inverse=True)
    pair = name_codes * len(distinct_keys) + key_codes.reshape(-1)
    distinct, inverse = np.unique(pair, return_inverse=True)
    table = np.empty(len(distinct), np.int64)
    for i, code in enumerate(distinct.tolist()):
        name_code, key_code = divmod(code, len(distinct_keys))
        key = int(distinct_keys[key_code])
        table[i] = ids.id_of(None if key < 0 else key, dictionary[name_code])
    per_record: Ints = table[inverse.reshape(-1)]
    return per_record


def parquet_batches(path: Path, ids: SpeciesIds, size: int = BATCH) -> Iterator[Batch]:
    pa = _arrow()
    columns = parquet_columns(path)
    for record_batch in pa.parquet.ParquetFile(path).iter_batches(
        batch_size=size, columns=list(columns.values())
    ):
        n = record_batch.num_rows

        def get(name: str, batch: Any = record_batch) -> Any:
            return batch.column(columns[name]) if name in columns else None

        yield Batch(
            _species_ids(pa, get(SPECIES), get(KEY), n, ids),
            _floats(pa, get(LAT), n),
            _floats(pa, get(LON), n),
            _months(pa, get(MONTH), n),
            _statuses(pa, get(STATUS), n),
            _issues(pa, get(ISSUE), n),
        )


def tally_parquet(path: Path, cell_deg: float) -> Tally:
    """One file's tally: what a Ray task runs (module level, so Ray can ship it by name)."""
    tally = Tally(cell_deg)
    for batch in parquet_batches(path, tally.species):
        tally.add(batch)
    tally.totals()  # compacted before it travels
    return tally


# --- finding what the input is ----------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    layout: Layout
    files: int
    batches: Callable[[Tally], Iterator[Batch]]  # over the whole input, into this tally's ids
    parquet_files: tuple[Path, ...] = ()


def _magic(path: Path) -> bytes:
    with path.open("rb") as f:
        return f.read(4)


def _parquet_files(folder: Path) -> list[Path]:
    files = [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.name.startswith((".", "_")) and _magic(p) == b"PAR1"
    ]
    return files


def inspect(path: Path) -> Source:
    """What ``path`` holds and how to read it; NotOccurrences when it is none of the three."""
    if not path.exists():
        raise NotOccurrences(f"{path}: no such file or folder")
    if path.is_dir():
        if (path / "meta.xml").is_file():
            spec = dwc_occurrences((path / "meta.xml").read_bytes(), str(path))
            core = path / spec.location

            def folder_rows(tally: Tally) -> Iterator[Batch]:
                with core.open("rb") as raw, _text(raw, spec.encoding) as stream:
                    yield from text_batches(dwc_rows(stream, spec), spec.layout, tally.species)

            return Source("DwC-A", 1, folder_rows)
        files = _parquet_files(path)
        if not files:
            raise NotOccurrences(f"{path}: a folder with no meta.xml (DwC-A) and no Parquet files")
        return _parquet_source(files)
    magic = _magic(path)
    if magic == b"PAR1":
        return _parquet_source([path])
    if magic.startswith(b"PK"):
        return _zip_source(path)
    with path.open("rb") as raw, _text(raw) as stream:
        simple_csv_rows(stream, str(path))  # the header checked now: a wrong file fails before any work

    def csv_rows(tally: Tally) -> Iterator[Batch]:
        with path.open("rb") as raw, _text(raw) as stream:
            layout, rows = simple_csv_rows(stream, str(path))
            yield from text_batches(rows, layout, tally.species)

    return Source("SIMPLE_CSV", 1, csv_rows)


def _parquet_source(files: list[Path]) -> Source:
    for file in files:
        parquet_columns(file)

    def batches(tally: Tally) -> Iterator[Batch]:
        for file in files:
            yield from parquet_batches(file, tally.species)

    return Source("Parquet", len(files), batches, tuple(files))


def _zip_source(path: Path) -> Source:
    try:
        with zipfile.ZipFile(path) as archive:
            members = {info.filename: info for info in archive.infolist() if not info.is_dir()}
            meta = archive.read("meta.xml") if "meta.xml" in members else None
    except zipfile.BadZipFile as exc:
        raise NotOccurrences(f"{path}: not a readable zip ({exc})") from exc
    if meta is not None:
        spec = dwc_occurrences(meta, str(path))
        if spec.location not in members:
            raise NotOccurrences(f"{path}: meta.xml names {spec.location}, which the zip does not hold")

        def dwc_batches(tally: Tally) -> Iterator[Batch]:
            with (
                zipfile.ZipFile(path) as archive,
                archive.open(spec.location) as raw,
                _text(raw, spec.encoding) as stream,
            ):
                yield from text_batches(dwc_rows(stream, spec), spec.layout, tally.species)

        return Source("DwC-A", 1, dwc_batches)
    tables = [i for i in members.values() if i.filename.lower().endswith((".csv", ".txt", ".tsv"))]
    if not tables:
        raise NotOccurrences(f"{path}: a zip with no meta.xml (DwC-A) and no .csv/.txt (SIMPLE_CSV)")
    member = max(tables, key=lambda i: i.file_size).filename  # GBIF's SIMPLE_CSV zip holds one
    with zipfile.ZipFile(path) as archive, archive.open(member) as raw, _text(raw) as stream:
        simple_csv_rows(stream, f"{path} ({member})")

    def zipped_rows(tally: Tally) -> Iterator[Batch]:
        with zipfile.ZipFile(path) as archive, archive.open(member) as raw, _text(raw) as stream:
            layout, rows = simple_csv_rows(stream, f"{path} ({member})")
            yield from text_batches(rows, layout, tally.species)

    return Source("SIMPLE_CSV", 1, zipped_rows)


# --- building ---------------------------------------------------------------------------------


class EmptyTable(ValueError):
    """No record was kept: nothing is written (a table of nothing would weigh every species alike)."""

    def __init__(self, report: BuildReport) -> None:
        super().__init__(f"no record of {report.source} was kept: nothing written")
        self.report = report


def build_range_table(
    source: Path,
    out: Path,
    cell_deg: float,
    *,
    engine: Engine = "local",
    ray_address: str | None = None,
    workers: int = 1,
    progress: Callable[[int], None] | None = None,
) -> BuildReport:
    """Read ``source``, write the table to ``out`` (replaced at once, when the tally is done).
    NotOccurrences: not an occurrence download; ValueError: nothing kept (nothing written)."""
    started = time.perf_counter()
    found = inspect(source)
    tally = Tally(cell_deg)
    if engine == "ray":
        if found.layout != "Parquet":
            raise NotOccurrences(f"--engine ray reads Parquet (a task per file); {source} is {found.layout}")
        for part in _ray_tallies(found.parquet_files, cell_deg, ray_address, workers):
            tally.merge(part)
            if progress is not None:
                progress(part.rows)
    else:
        for batch in found.batches(tally):
            tally.add(batch)
            if progress is not None:
                progress(len(batch) + batch.malformed)
    report = BuildReport(source, out, found.layout, cell_deg, files=found.files)
    report.rows, report.kept, report.skipped = tally.rows, tally.kept, tally.skipped
    report.undated, report.month_unusable = tally.undated, tally.month_unusable
    if not tally.kept:
        report.seconds = time.perf_counter() - started
        raise EmptyTable(report)
    write_table(out, tally, report)
    report.seconds = time.perf_counter() - started
    report.bytes = out.stat().st_size
    return report


def _ray_tallies(
    files: Sequence[Path], cell_deg: float, address: str | None, workers: int
) -> Iterator[Tally]:
    import ray

    from app.core.ray_session import ray_session

    with ray_session(address, workers):
        remote = ray.remote(tally_parquet)
        pending = [remote.remote(f, cell_deg) for f in files]
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            yield ray.get(done[0])


def write_table(out: Path, tally: Tally, report: BuildReport) -> None:
    """The table in one transaction into ``OUT.tmp``, then renamed over ``out``."""
    lat_i, lon_i, month, species, counts = tally.rows_for_table()
    used = np.unique(species)
    report.species = len(used)
    report.cells = len(np.unique(lat_i * (tally.n_lon + 1) + lon_i)) if len(lat_i) else 0
    report.entries = len(counts)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    db = sqlite3.connect(tmp)
    try:
        db.execute("PRAGMA journal_mode=OFF")  # a fresh file, renamed into place only when complete
        db.execute("PRAGMA synchronous=OFF")
        with db:
            db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")
            db.execute(
                "CREATE TABLE species (id INTEGER PRIMARY KEY, species_key INTEGER, name TEXT NOT NULL)"
            )
            db.execute(
                "CREATE TABLE counts (cell_lat INTEGER NOT NULL, cell_lon INTEGER NOT NULL, "
                "month INTEGER NOT NULL, species INTEGER NOT NULL, n INTEGER NOT NULL, "
                "PRIMARY KEY (cell_lat, cell_lon, month, species)) WITHOUT ROWID"
            )
            pairs = tally.species.pairs()  # the species of skipped records too: only those counted
            db.executemany("INSERT INTO species VALUES (?, ?, ?)", ((i, *pairs[i]) for i in used.tolist()))
            db.executemany(
                "INSERT INTO counts VALUES (?, ?, ?, ?, ?)",
                zip(
                    lat_i.tolist(),
                    lon_i.tolist(),
                    month.tolist(),
                    species.tolist(),
                    counts.tolist(),
                    strict=True,
                ),
            )
            meta = {
                "format": FORMAT,
                "cell_deg": repr(tally.cell_deg),
                "source": str(report.source),
                "layout": report.layout,
                "built_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "rows": report.rows,
                "kept": report.kept,
                "undated": report.undated,
                "month_unusable": report.month_unusable,
                "species": report.species,
                "cells": report.cells,
                "entries": report.entries,
                **{f"skipped_{reason}": report.skipped.get(reason, 0) for reason in SKIP_REASONS},
            }
            db.executemany("INSERT INTO meta VALUES (?, ?)", ((k, str(v)) for k, v in meta.items()))
    finally:
        db.close()
    tmp.replace(out)
