"""The "seen nearby" prior: how often GBIF has recorded each candidate species near a photo.

A photo's latitude/longitude (and, when its date is known, the month) picks a grid cell of
``GEO_PRIOR_CELL_DEG`` degrees, aligned on multiples of that size. Where the counts come from is
``GEO_PRIOR_SOURCE``: ``gbif`` (below), ``table`` (a range table ``build-range`` made from a GBIF
download, app/enrich/range_table.py: no network per request; there the date counts the month
and its two neighbours, ``season``) or ``off`` (no prior). For the cell, ONE GBIF occurrence
search with a species facet counts the records per species::

    GET {GBIF_API_URL}/occurrence/search?decimalLatitude=S,N&decimalLongitude=W,E[&month=M]
        &facet=speciesKey&facetLimit=N&limit=0&occurrenceStatus=PRESENT&hasGeospatialIssue=false

(``occurrenceStatus=PRESENT``: GBIF also holds absence records, which are no sighting;
``hasGeospatialIssue=false``: records whose coordinates GBIF flagged are not evidence of place.)
The answer is cached in the GBIF client's SQLite cache, one entry per cell and month, with the
same TTL and stale-if-error as species matches, so every later photo in the cell costs nothing.

Weights. A candidate species with ``n`` records in the cell weighs::

    w(n) = floor + (1 - floor) * n / (n + half_saturation)

``floor`` (``GEO_PRIOR_FLOOR``) for a species GBIF never recorded there, halfway to 1 at
``half_saturation`` records (``GEO_PRIOR_HALF_SATURATION``), towards 1 for a well-recorded one.
A label not linked to GBIF (no species key) weighs 1.0 here and is reported as unlinked; the
identify service gives such labels the mean weight of the linked species instead (neither favoured
over a recorded species nor demoted like an unrecorded one: nothing is known of them). A range
table knows every record's species name too, so there every label is matched: by its GBIF
species key where the table has it, else by its name (``label_match``).
Only the cell's ``GEO_PRIOR_FACET_LIMIT`` most recorded species are
listed by GBIF; a species below them counts as unrecorded (it had at most as many records as the
last one listed).

Blending (``blend``). The identify service multiplies each species' vision probability by its
weight and renormalises over the model's species (labels that are no species, such as a
background class, are left out)::

    p'(s) = p(s) * w(s) * P / sum_t p(t) * w(t),   P = sum_t p(t) over the species

(the species keep the probability they held together: 1 minus the background's), so an
unrecorded species is demoted, by ``floor`` relative to a well-recorded one, but never removed:
a confident vision score still wins over a weak one of a common species.

Failure. ``GeoPrior.counts`` never raises for GBIF: down, slower than ``GEO_PRIOR_TIMEOUT``
(slot wait and retries included), 429/5xx after the retries, invalid JSON, or an unusable
location give a ``GeoUnavailable`` whose reason the caller reports with the answer it gives
without the prior; so does a range table that is missing or unreadable.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

import numpy as np
import numpy.typing as npt

from app.enrich.gbif import CacheState, GbifClient
from app.enrich.taxonomy import Taxon
from app.errors import ServiceError
from app.settings import GeoPriorSettings

log = logging.getLogger(__name__)

GeoSource = Literal["gbif", "table"]
_K = TypeVar("_K")
_V = TypeVar("_V")

_EPS = 1e-9  # floating-point slack: 51.3 / 0.1 is 512.999..., yet 51.3 starts a 0.1° cell


def _index(value: float, size: float, limit: float) -> int:
    """Which multiple of ``size`` starts the band holding ``value``; the upper edge itself (90,
    180) belongs to the last band."""
    index = math.floor(value / size + _EPS)
    return index - 1 if index * size >= limit - _EPS else index


def _band(value: float, size: float, limit: float) -> tuple[float, float]:
    """The [low, high] multiples of ``size`` around ``value``, clipped to [-limit, limit]."""
    index = _index(value, size, limit)
    low, high = max(index * size, -limit), min((index + 1) * size, limit)
    return round(low, 9) + 0.0, round(high, 9) + 0.0  # + 0.0: no "-0"


def cell_index(lat: float, lon: float, size: float) -> tuple[int, int]:
    """The (latitude, longitude) band numbers of the cell ``Cell.containing`` gives: a range
    table's key (app/enrich/range_table.py)."""
    return _index(lat, size, 90.0), _index(lon, size, 180.0)


def cell_indices(
    lat: npt.NDArray[np.float64], lon: npt.NDArray[np.float64], size: float
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """``cell_index`` over arrays of valid places (build-range's batches), with the same floating
    point operations in the same order, so that a table and a photo agree on every cell edge."""

    def bands(values: npt.NDArray[np.float64], limit: float) -> npt.NDArray[np.int64]:
        index = np.floor(values / size + _EPS)
        return np.where(index * size >= limit - _EPS, index - 1, index).astype(np.int64)

    return bands(lat, 90.0), bands(lon, 180.0)


def season(month: int | None) -> tuple[int, ...]:
    """The months a range table counts for a photo's month: that month and its two neighbours,
    December and January neighbours too (BirdNET's week filter, widened to months: a species
    seen in late June is about in early July); every month when no date is known (())."""
    if month is None:
        return ()
    return tuple(sorted({(month - 2) % 12 + 1, month, month % 12 + 1}))


def normalise_name(name: str | None) -> str:
    """A species name as a range table matches it: words single-spaced, case folded."""
    return " ".join((name or "").split()).casefold()


def _number(value: float) -> str:
    return f"{value:.9f}".rstrip("0").rstrip(".")  # 51.3, not 51.300000000000004


@dataclass(frozen=True, slots=True)
class Cell:
    """A grid cell (degrees, edges included as in GBIF's range queries) and a month (1-12) or None."""

    south: float
    north: float
    west: float
    east: float
    month: int | None = None

    @classmethod
    def containing(cls, lat: float, lon: float, size: float = 1.0, month: int | None = None) -> Cell:
        """The cell of ``size`` degrees holding (lat, lon); ValueError for an impossible place."""
        if not (math.isfinite(size) and 0 < size <= 180):
            raise ValueError(f"cell size {size} is not in (0, 180] degrees")
        if not (math.isfinite(lat) and -90 <= lat <= 90):
            raise ValueError(f"latitude {lat} is not in [-90, 90]")
        if not (math.isfinite(lon) and -180 <= lon <= 180):
            raise ValueError(f"longitude {lon} is not in [-180, 180]")
        if month is not None and not 1 <= month <= 12:
            raise ValueError(f"month {month} is not in 1..12")
        south, north = _band(lat, size, 90.0)
        west, east = _band(lon, size, 180.0)
        return cls(south, north, west, east, month)

    def query(self) -> dict[str, str]:
        """GBIF's occurrence-search parameters for the cell (and its month)."""
        params = {
            "decimalLatitude": f"{_number(self.south)},{_number(self.north)}",
            "decimalLongitude": f"{_number(self.west)},{_number(self.east)}",
        }
        if self.month is not None:
            params["month"] = str(self.month)
        return params


@dataclass(frozen=True, slots=True)
class NearbyCounts:
    """The records in a cell. From GBIF: speciesKey -> occurrences (the top ``facetLimit``
    species) and GBIF's ``count`` of all records there (every species, and records without a
    species), with the GBIF cache's state. From a range table: speciesKey -> occurrences for the
    records that had a key, ``names`` (``normalise_name``) -> occurrences for all, ``total`` the
    table's records in the cell; both over ``months`` (``season``; () = every month)."""

    cell: Cell
    counts: dict[int, int]
    total: int
    cache: CacheState | None
    names: Mapping[str, int] = field(default_factory=dict)
    source: GeoSource = "gbif"
    months: tuple[int, ...] = ()

    def records(self, key: int | None, names: Sequence[str] = ()) -> int | None:
        """A label's records here, from its GBIF species key and its normalised names; None: it
        cannot be told (GBIF is asked by key, and the label has none)."""
        if key is not None and key in self.counts:
            return self.counts[key]
        if self.source == "gbif":
            return None if key is None else 0
        # The table kept every record's name: the key where the download had it, else the name
        # (a label linked to NCBI, or to no taxonomy at all, is still matched).
        return next((self.names[name] for name in names if name in self.names), 0)


def label_match(scientific_name: str, taxon: Taxon | None) -> tuple[int | None, tuple[str, ...]]:
    """What a label is looked up by: its GBIF species key (only from a taxonomy linked to GBIF:
    an NCBI taxid is no GBIF key) and its names (the label's, then the taxon's canonical one)."""
    key = taxon.species_key if taxon is not None else None  # None for a taxon of another source
    names = [normalise_name(scientific_name), normalise_name(taxon.canonicalName if taxon else None)]
    return key, tuple(dict.fromkeys(name for name in names if name))


Match = tuple[int | None, tuple[str, ...]]  # a label's GBIF species key and normalised names


class LabelIndex:
    """A model's labels as the prior looks them up, built once per label list and taxonomy: per
    request the cell's counts are walked (tens to thousands of species), not the labels."""

    def __init__(self, matches: Sequence[Match]) -> None:
        self.size = len(matches)
        self.linked = np.array([key is not None for key, _ in matches], dtype=bool)
        self._keys: dict[int, list[int]] = {}
        self._names: list[dict[str, list[int]]] = [
            {} for _ in range(max((len(n) for _, n in matches), default=0))
        ]
        for i, (key, names) in enumerate(matches):
            if key is not None:
                self._keys.setdefault(key, []).append(i)
            for level, name in enumerate(names):
                self._names[level].setdefault(name, []).append(i)

    def records(self, nearby: NearbyCounts) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.bool_]]:
        """Per label, its records in the cell (``NearbyCounts.records``), and whether they can be
        told (from GBIF: the labels with a key; from a table: every label)."""
        found = [0] * self.size
        if nearby.source == "table":
            for level in reversed(self._names):  # a label's first name found wins: written last
                for name, n in _common(level, nearby.names):
                    for i in level[name]:
                        found[i] = n
        for key, n in _common(self._keys, nearby.counts):  # the key before any name
            for i in self._keys[key]:
                found[i] = n
        known = self.linked if nearby.source == "gbif" else np.ones(self.size, dtype=bool)
        return np.array(found, dtype=np.int64), known


def _common(ours: Mapping[_K, object], theirs: Mapping[_K, _V]) -> list[tuple[_K, _V]]:
    """The entries of ``theirs`` whose key ``ours`` has, walking the smaller of the two."""
    if len(ours) < len(theirs):
        return [(k, theirs[k]) for k in ours if k in theirs]
    return [(k, v) for k, v in theirs.items() if k in ours]


class CountsTable(Protocol):
    """Counts per cell from a local table (app/enrich/range_table.py): ``cached`` answers from
    memory or None, without blocking; ``lookup`` may read the disk (a worker thread)."""

    def cached(self, lat: float, lon: float, month: int | None) -> NearbyCounts | None: ...

    def lookup(self, lat: float, lon: float, month: int | None) -> NearbyCounts | GeoUnavailable: ...


@dataclass(frozen=True, slots=True)
class GeoUnavailable:
    """No prior for this photo, and why (for the caller to report with its answer)."""

    reason: str


@dataclass(frozen=True, slots=True)
class PriorWeights:
    weights: npt.NDArray[np.float64]  # one per candidate, in the candidates' order
    unlinked: tuple[int, ...]  # positions of candidates without a GBIF species key (weight 1.0)


def species_counts(payload: Mapping[str, Any]) -> tuple[dict[int, int], int]:
    """(speciesKey -> count, total) from an occurrence search's JSON; entries that are not a
    numeric key with a count are skipped."""
    counts: dict[int, int] = {}
    facets = payload.get("facets")
    for facet in facets if isinstance(facets, list) else ():
        if not isinstance(facet, dict) or str(facet.get("field", "")).upper() != "SPECIES_KEY":
            continue
        entries = facet.get("counts")
        for entry in entries if isinstance(entries, list) else ():
            try:
                key, n = int(entry["name"]), int(entry["count"])
            except (KeyError, TypeError, ValueError):
                continue
            if n > 0:
                counts[key] = counts.get(key, 0) + n
    total = payload.get("count")
    return counts, total if isinstance(total, int) else sum(counts.values())


def record_weights(
    records: Sequence[int | None], *, floor: float, half_saturation: float
) -> npt.NDArray[np.float64]:
    """``floor + (1 - floor) * n / (n + half_saturation)`` per candidate (n: its records in the
    cell); 1.0 for a candidate whose records cannot be told (None)."""
    if not 0 < floor <= 1:
        raise ValueError(f"floor {floor} is not in (0, 1]")
    if not half_saturation > 0:
        raise ValueError(f"half_saturation {half_saturation} is not > 0")
    n = np.array([0 if r is None else max(r, 0) for r in records], np.float64)
    weights = floor + (1.0 - floor) * n / (n + half_saturation)
    weights[list(unlinked(records))] = 1.0
    return weights


def prior_weights(
    counts: Mapping[int, int],
    species_keys: Sequence[int | None],
    *,
    floor: float,
    half_saturation: float,
) -> npt.NDArray[np.float64]:
    """``record_weights`` of candidates by GBIF species key (n: 0 when GBIF lists none; 1.0 for a
    candidate without a key, None)."""
    records = [None if key is None else counts.get(key, 0) for key in species_keys]
    return record_weights(records, floor=floor, half_saturation=half_saturation)


def unlinked(records: Sequence[int | None]) -> tuple[int, ...]:
    return tuple(i for i, r in enumerate(records) if r is None)


def blend(probabilities: npt.ArrayLike, weights: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """The documented rule: ``p * w`` renormalised to sum to what ``p`` summed to (1 for a
    softmax over the species). All-zero scores are returned as they are."""
    p = np.asarray(probabilities, np.float64)
    w = np.asarray(weights, np.float64)
    if p.shape != w.shape:
        raise ValueError(f"probabilities of shape {p.shape}, weights of shape {w.shape}")
    product = p * w
    total = float(product.sum())
    return product * (float(p.sum()) / total) if total > 0 else p.copy()


class GeoPrior:
    """Counts per cell for a request's path, from ``GEO_PRIOR_SOURCE``. ``gbif``: at most one
    upstream call per cell at a time (concurrent photos in one cell share it), bounded by
    ``GEO_PRIOR_TIMEOUT``, never raising for GBIF. ``table``: the range table, from memory when
    the cell was read lately, else read on a worker thread (the event loop never waits on the
    disk). ``off``: none."""

    def __init__(
        self, client: GbifClient, settings: GeoPriorSettings, table: CountsTable | None = None
    ) -> None:
        self._client = client
        self._settings = settings
        self._table = table
        self._pending: dict[Cell, asyncio.Task[NearbyCounts | GeoUnavailable]] = {}

    @property
    def source(self) -> Literal["gbif", "table", "off"]:
        return self._settings.source

    def cell(self, lat: float, lon: float, month: int | None = None) -> Cell:
        return Cell.containing(lat, lon, self._settings.cell_deg, month)

    def query(self, cell: Cell) -> dict[str, str]:
        return {
            **cell.query(),
            "facet": "speciesKey",
            "facetLimit": str(self._settings.facet_limit),
            "limit": "0",
            "occurrenceStatus": "PRESENT",
            "hasGeospatialIssue": "false",
        }

    async def counts(self, lat: float, lon: float, month: int | None = None) -> NearbyCounts | GeoUnavailable:
        if self.source == "off":
            return GeoUnavailable("GEO_PRIOR_SOURCE=off: no counts are asked for")
        try:
            cell = self.cell(lat, lon, month)
        except (TypeError, ValueError) as exc:
            return GeoUnavailable(f"no usable location: {exc}")
        if self.source == "table":
            return await self._from_table(lat, lon, month)
        task = self._pending.get(cell)
        if task is None:
            task = asyncio.create_task(self._lookup(cell))
            self._pending[cell] = task
            task.add_done_callback(lambda done: self._forget(cell, done))
        return await asyncio.shield(task)  # a caller giving up leaves the lookup to finish (and cache)

    def weigh(self, nearby: NearbyCounts, species_keys: Sequence[int | None]) -> PriorWeights:
        return self.weigh_records([nearby.records(key) for key in species_keys])

    def weigh_records(self, records: Sequence[int | None]) -> PriorWeights:
        """The weights of candidates with these records in the cell (None: cannot be told)."""
        weights = record_weights(
            records, floor=self._settings.floor, half_saturation=self._settings.half_saturation
        )
        return PriorWeights(weights, unlinked(records))

    def weigh_known(self, records: npt.NDArray[np.int64], known: npt.NDArray[np.bool_]) -> PriorWeights:
        """``weigh_records`` on arrays: ``known`` False where the records cannot be told."""
        floor, half = self._settings.floor, self._settings.half_saturation
        n = np.maximum(records, 0).astype(np.float64)
        weights = np.where(known, floor + (1.0 - floor) * n / (n + half), 1.0)
        return PriorWeights(weights, tuple(int(i) for i in np.flatnonzero(~known)))

    async def _from_table(self, lat: float, lon: float, month: int | None) -> NearbyCounts | GeoUnavailable:
        if self._table is None:
            return GeoUnavailable("GEO_PRIOR_SOURCE=table, and no range table is open (GEO_PRIOR_TABLE)")
        hit = self._table.cached(lat, lon, month)
        if hit is not None:
            return hit
        try:
            return await asyncio.to_thread(self._table.lookup, lat, lon, month)
        except Exception as exc:  # a prior is optional: never a reason for an identification to fail
            log.exception("geo prior failed reading the range table")
            return GeoUnavailable(f"range table unavailable: {type(exc).__name__}: {exc}")

    def _forget(self, cell: Cell, task: asyncio.Task[NearbyCounts | GeoUnavailable]) -> None:
        if self._pending.get(cell) is task:
            del self._pending[cell]

    async def _lookup(self, cell: Cell) -> NearbyCounts | GeoUnavailable:
        try:
            answer = await self._client.occurrence_facets(self.query(cell), max_wait_s=self._settings.timeout)
            counts, total = species_counts(answer.payload)
        except ServiceError as exc:
            # The cell is where someone was: it stays out of the log (the answer carries it).
            log.warning("no geo prior for a cell: %s", exc.message)
            return GeoUnavailable(f"GBIF occurrence counts unavailable: {exc.message}")
        except Exception as exc:  # a prior is optional: never a reason for an identification to fail
            log.exception("geo prior failed for a cell")
            return GeoUnavailable(f"GBIF occurrence counts unavailable: {type(exc).__name__}: {exc}")
        months = () if cell.month is None else (cell.month,)
        return NearbyCounts(cell, counts, total, answer.cache, months=months)
