"""The "seen nearby" prior on an observation: the chosen model's species re-weighted by how often
GBIF has recorded each near the photos' place (``app.enrich.geo``: one occurrence search per grid
cell, cached), never removed (a floor), and never a failure: GBIF down or slow gives the answer
without the prior, saying why."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.gbif import CacheState
from app.enrich.geo import Cell, GeoPrior, GeoUnavailable, blend
from app.enrich.taxonomies import Taxonomy

GeoStatus = Literal["applied", "not_requested", "unavailable", "not_linked"]
Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class GeoOutcome:
    status: GeoStatus
    reason: str | None = None
    cell: Cell | None = None
    cell_records: int | None = None  # GBIF's records in the cell, all species
    cache: CacheState | None = None
    weights: npt.NDArray[np.float64] | None = None  # per class of the model
    records: npt.NDArray[np.int64] | None = None  # per class: its records in the cell
    vision: Array | None = None  # the probabilities before the prior

    @classmethod
    def not_requested(cls, place_given: bool) -> GeoOutcome:
        reason = "no model accepted the photos" if place_given else "no lat/lon given"
        return cls("not_requested", reason)


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
    ) -> tuple[Array, GeoOutcome]:
        """The species re-weighted and renormalised among themselves: the background class
        (no GBIF key) keeps its probability and is neither favoured nor demoted."""
        if not taxonomy:
            return probabilities, GeoOutcome(
                "not_linked", "the model's labels are not linked to GBIF: run `python -m app link-gbif`"
            )
        nearby = await self.prior.counts(lat, lon, month)
        if isinstance(nearby, GeoUnavailable):
            return probabilities, GeoOutcome("unavailable", nearby.reason)
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
        )
        return weighted, outcome
