"""The "seen nearby" prior: how often GBIF has recorded each candidate species near a photo.

A photo's latitude/longitude (and, when its date is known, the month) picks a grid cell of
``GEO_PRIOR_CELL_DEG`` degrees, aligned on multiples of that size. For the cell, ONE GBIF
occurrence search with a species facet counts the records per species::

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
over a recorded species nor demoted like an unrecorded one: nothing is known of them).
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
without the prior.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from app.enrich.gbif import CacheState, GbifClient
from app.errors import ServiceError
from app.settings import GeoPriorSettings

log = logging.getLogger(__name__)

_EPS = 1e-9  # floating-point slack: 51.3 / 0.1 is 512.999..., yet 51.3 starts a 0.1° cell


def _band(value: float, size: float, limit: float) -> tuple[float, float]:
    """The [low, high] multiples of ``size`` around ``value``, clipped to [-limit, limit]; the
    upper edge itself (90, 180) belongs to the last band."""
    index = math.floor(value / size + _EPS)
    if index * size >= limit - _EPS:
        index -= 1
    low, high = max(index * size, -limit), min((index + 1) * size, limit)
    return round(low, 9) + 0.0, round(high, 9) + 0.0  # + 0.0: no "-0"


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
    """GBIF's records in a cell: speciesKey -> occurrences (the top ``facetLimit`` species), and
    GBIF's ``count`` of all records there (every species, and records without a species)."""

    cell: Cell
    counts: dict[int, int]
    total: int
    cache: CacheState


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


def prior_weights(
    counts: Mapping[int, int],
    species_keys: Sequence[int | None],
    *,
    floor: float,
    half_saturation: float,
) -> npt.NDArray[np.float64]:
    """``floor + (1 - floor) * n / (n + half_saturation)`` per candidate (n: its records in the
    cell, 0 when GBIF lists none); 1.0 for a candidate without a species key (None)."""
    if not 0 < floor <= 1:
        raise ValueError(f"floor {floor} is not in (0, 1]")
    if not half_saturation > 0:
        raise ValueError(f"half_saturation {half_saturation} is not > 0")
    n = np.array([0 if key is None else max(counts.get(key, 0), 0) for key in species_keys], np.float64)
    weights = floor + (1.0 - floor) * n / (n + half_saturation)
    weights[[i for i, key in enumerate(species_keys) if key is None]] = 1.0
    return weights


def unlinked(species_keys: Sequence[int | None]) -> tuple[int, ...]:
    return tuple(i for i, key in enumerate(species_keys) if key is None)


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
    """Counts per cell from GBIF, for a request's path: at most one upstream call per cell at a
    time (concurrent photos in one cell share it), bounded by ``GEO_PRIOR_TIMEOUT``, never
    raising for GBIF."""

    def __init__(self, client: GbifClient, settings: GeoPriorSettings) -> None:
        self._client = client
        self._settings = settings
        self._pending: dict[Cell, asyncio.Task[NearbyCounts | GeoUnavailable]] = {}

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
        try:
            cell = self.cell(lat, lon, month)
        except (TypeError, ValueError) as exc:
            return GeoUnavailable(f"no usable location: {exc}")
        task = self._pending.get(cell)
        if task is None:
            task = asyncio.create_task(self._lookup(cell))
            self._pending[cell] = task
            task.add_done_callback(lambda done: self._forget(cell, done))
        return await asyncio.shield(task)  # a caller giving up leaves the lookup to finish (and cache)

    def weigh(self, nearby: NearbyCounts, species_keys: Sequence[int | None]) -> PriorWeights:
        weights = prior_weights(
            nearby.counts,
            species_keys,
            floor=self._settings.floor,
            half_saturation=self._settings.half_saturation,
        )
        return PriorWeights(weights, unlinked(species_keys))

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
        return NearbyCounts(cell, counts, total, answer.cache)
