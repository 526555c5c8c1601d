"""The place on an answer: the chosen model's species re-weighted by how often GBIF has recorded
each near the photos' place (``app.enrich.geo``: one occurrence search per grid cell, cached).

Two modes (``geo=`` on the endpoints, ``app.services.steering``): ``prior`` (the default) demotes
an unrecorded species by the floor weight, never removes it; ``filter`` keeps only the species
GBIF has recorded in the cell. Neither is ever a failure: GBIF down or slow gives the answer
without the place, saying why."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.gbif import CacheState
from app.enrich.geo import Cell, GeoPrior, GeoUnavailable, blend
from app.enrich.taxonomies import Taxonomy

GeoStatus = Literal["applied", "not_requested", "unavailable", "not_linked", "off"]
GeoMode = Literal["off", "prior", "filter"]
Array = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class Place:
    """Where (WGS84) and when an observation was made; the month picks GBIF's records."""

    lat: float
    lon: float
    date: dt.date | None = None

    @property
    def month(self) -> int | None:
        return self.date.month if self.date is not None else None


@dataclass(frozen=True)
class GeoOutcome:
    status: GeoStatus
    reason: str | None = None
    cell: Cell | None = None
    cell_records: int | None = None  # GBIF's records in the cell, all species
    cache: CacheState | None = None
    weights: npt.NDArray[np.float64] | None = None  # per class of the model: the prior's w(n)
    records: npt.NDArray[np.int64] | None = None  # per class: its records in the cell
    vision: Array | None = None  # the probabilities before the place
    mode: GeoMode = "prior"
    # geo=filter: per class, recorded in the cell (what the filter keeps); None in prior mode
    recorded: npt.NDArray[np.bool_] | None = None

    @classmethod
    def not_requested(cls, place_given: bool, mode: GeoMode = "prior") -> GeoOutcome:
        reason = "no model accepted the photos" if place_given else "no lat/lon given"
        return cls("not_requested", reason, mode=mode)

    @classmethod
    def off(cls) -> GeoOutcome:
        return cls("off", "geo=off: the place is ignored", mode="off")

    def factors(self) -> npt.NDArray[np.float64] | None:
        """Per class, what the place multiplied the vision score by before renormalising (the
        results' ``geo_score``): the prior's weight, or 1/0 (recorded or not) for the filter."""
        if self.status != "applied":
            return None
        if self.recorded is not None:
            return self.recorded.astype(np.float64)
        return self.weights


class GeoWeighting:
    def __init__(self, prior: GeoPrior) -> None:
        self.prior = prior

    async def apply(
        self,
        probabilities: Array,
        labels: list[Label],
        taxonomy: Taxonomy,
        lat: float,
        lon: float,
        month: int | None,
        background_index: int | None = None,
        mode: Literal["prior", "filter"] = "prior",
    ) -> tuple[Array, GeoOutcome]:
        """The species re-weighted (prior) or kept when recorded (filter), renormalised among
        themselves to the probability they held: the background class (no GBIF key) keeps its
        probability and is neither favoured nor demoted. A filter that keeps nothing leaves
        every species at 0 (the caller says ``filtered_out``)."""
        if not taxonomy:
            return probabilities, GeoOutcome(
                "not_linked",
                "the model's labels are not linked to GBIF: run `python -m app link-gbif`",
                mode=mode,
            )
        nearby = await self.prior.counts(lat, lon, month)
        if isinstance(nearby, GeoUnavailable):
            return probabilities, GeoOutcome("unavailable", nearby.reason, mode=mode)
        keys = [
            taxon.species_key if (taxon := taxonomy.get(label.scientific_name)) is not None else None
            for label in labels
        ]
        weighed = self.prior.weigh(nearby, keys)
        weights = weighed.weights.copy()
        linked = [i for i in range(len(keys)) if keys[i] is not None]
        if weighed.unlinked and linked:  # nothing is known of them: the linked species' mean
            weights[list(weighed.unlinked)] = float(weights[linked].mean())
        records = np.array([nearby.counts.get(key, 0) if key is not None else 0 for key in keys], np.int64)
        species = np.ones(len(labels), dtype=bool)
        if background_index is not None:
            species[background_index] = False
        weighted = np.array(probabilities, dtype=np.float32)
        recorded = None
        if mode == "filter":
            # Only what GBIF has records of here; an unlinked label cannot show any, so it goes.
            recorded = (records > 0) & species
            kept = recorded[species].astype(np.float64)
            # The prior's rule with 1/0 weights; where nothing recorded holds any probability,
            # blend hands p back unweighted, and the filter must still keep none of it.
            weighted[species] = blend(probabilities[species], kept) * kept
        else:
            weighted[species] = blend(probabilities[species], weights[species])
        outcome = GeoOutcome(
            "applied",
            None,
            nearby.cell,
            nearby.total,
            nearby.cache,
            weights,
            records,
            probabilities,
            mode=mode,
            recorded=recorded,
        )
        return weighted, outcome
