"""Stage 3, steer. In: one model's probabilities (the photos combined), the plan's filters and
the place. Out: ``Steered``: the scores the answer ranks by, what they were before the place,
the classes it may list, and what the place did (``GeoOutcome``).

- the taxon/list filters keep some classes and renormalise them (they sum to 1: the probability
  of each *given that it is one of the kept species*); the background class keeps its raw value;
- the place (``geo``): ``prior`` (the default) weighs each species by how often GBIF has recorded
  it in the place's grid cell (``app.enrich.geo``: one occurrence search per cell, cached, or a
  range table built from a GBIF download, per ``GEO_PRIOR_SOURCE``), and demotes an unrecorded
  one by the floor weight, never removes it; ``filter`` keeps only the recorded species, and when
  that removes the photos' best species the answer names its nearest ancestor that has recorded
  species; ``off`` ignores the place.

Neither is ever a failure: GBIF down or slow, or the range table missing, gives the answer
without the place, saying why.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.gbif import CacheState
from app.enrich.geo import Cell, GeoPrior, GeoSource, GeoUnavailable, LabelIndex, blend, label_match
from app.enrich.taxonomies import Taxonomy
from app.enrich.taxonomy import ROLLUP_RANKS, Rollup, same_place
from app.identification.plan import Mask, Plan, species_mask
from app.identification.request import GeoMode, Place
from app.models.registry import LoadedModel

GeoStatus = Literal["applied", "not_requested", "unavailable", "not_linked", "off"]
Array = npt.NDArray[np.float32]


# --- the place -------------------------------------------------------------------------------


@dataclass(frozen=True)
class GeoOutcome:
    status: GeoStatus
    reason: str | None = None
    cell: Cell | None = None
    cell_records: int | None = None  # the records in the cell, all species
    cache: CacheState | None = None  # GBIF's cache; None for a range table
    weights: npt.NDArray[np.float64] | None = None  # per class of the model: the prior's w(n)
    records: npt.NDArray[np.int64] | None = None  # per class: its records in the cell
    mode: GeoMode = "prior"
    # geo=filter: per class, recorded in the cell (what the filter keeps); None in prior mode
    recorded: npt.NDArray[np.bool_] | None = None
    source: GeoSource | None = None  # where the counts came from (asked for, or applied)
    months: tuple[int, ...] = ()  # the months counted; () = every month

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
        # Per model's labels and taxonomy (both shared, replaced when re-read): what each label is
        # looked up by, worked out once rather than per photo (normalising 1,000 names costs ms).
        self._indexed: dict[tuple[int, int], tuple[list[Label], Taxonomy, LabelIndex]] = {}

    def _index(self, labels: list[Label], taxonomy: Taxonomy) -> LabelIndex:
        known = self._indexed.get((id(labels), id(taxonomy)))
        if known is not None and known[0] is labels and known[1] is taxonomy:
            return known[2]
        index = LabelIndex(
            [label_match(label.scientific_name, taxonomy.get(label.scientific_name)) for label in labels]
        )
        if len(self._indexed) >= 32:  # models x taxonomy re-reads: a handful; never unbounded
            self._indexed.clear()
        self._indexed[(id(labels), id(taxonomy))] = (labels, taxonomy, index)
        return index

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
        every species at 0 (the caller says ``filtered_out``). GBIF's counts are by species key,
        so they need the model's taxonomy; a range table's are by key and by name, so a model
        without one is matched by its labels' names."""
        source = self.prior.source
        if source == "off":
            reason = "GEO_PRIOR_SOURCE=off: the place is not weighed"
            return probabilities, GeoOutcome("off", reason, mode=mode)
        index = self._index(labels, taxonomy)
        # GBIF is asked by species key: a model none of whose labels has one (no taxonomy, or an
        # NCBI one alone) gets nothing from it.
        if source == "gbif" and not index.linked.any():
            return probabilities, GeoOutcome(
                "not_linked",
                "the model's labels are not linked to GBIF: run `python -m app link-gbif`",
                mode=mode,
                source=source,
            )
        nearby = await self.prior.counts(lat, lon, month)
        if isinstance(nearby, GeoUnavailable):
            return probabilities, GeoOutcome("unavailable", nearby.reason, mode=mode, source=source)
        records, known = index.records(nearby)
        weighed = self.prior.weigh_known(records, known)
        weights = weighed.weights.copy()
        if weighed.unlinked and known.any():  # nothing is known of them: the linked species' mean
            weights[~known] = float(weights[known].mean())
        species = np.ones(len(labels), dtype=bool)
        if background_index is not None:
            species[background_index] = False
        weighted = np.array(probabilities, dtype=np.float32)
        recorded = None
        if mode == "filter":
            # Only what has records here; an unlinked label cannot show any, so it goes.
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
            mode=mode,
            recorded=recorded,
            source=nearby.source,
            months=nearby.months,
        )
        return weighted, outcome


# --- the filters, then the place ------------------------------------------------------------


@dataclass(frozen=True)
class Steered:
    scores: Array  # [C] the final (combined) probabilities; 0 for species not kept
    vision: Array  # [C] after the taxon/list filter, before the place
    keep: Mask | None  # the classes the answer may list; None: every species
    kept_mass: float | None  # what the kept species held before renormalising; None: no filter
    geo: GeoOutcome
    rollup: Rollup | None = None  # geo=filter removed the best species: its nearest recorded ancestor


def narrow(probabilities: Array, keep: Mask) -> tuple[Array, float]:
    """The kept species divided by what they held together (so they sum to 1), the others 0;
    the background class (never kept) keeps its raw probability, for the answer to report."""
    p = np.asarray(probabilities, dtype=np.float32)
    kept_mass = float(p[keep].sum(dtype=np.float64))
    narrowed = np.zeros_like(p)
    if kept_mass > 0:
        narrowed[keep] = p[keep] / kept_mass
    return narrowed, kept_mass


def _filter(probabilities: Array, model: LoadedModel, plan: Plan) -> tuple[Array, Mask | None, float | None]:
    """The plan's taxon/list filters on the model's probabilities: (vision, keep, kept_mass),
    the probabilities themselves when the plan keeps every class."""
    keep = plan.keep.get(model.name)
    if keep is None:
        return probabilities, None, None
    vision, kept_mass = narrow(probabilities, keep)
    background = model.spec.background_index
    if background is not None:
        vision[background] = probabilities[background]
    return vision, keep, kept_mass


def steer_now(probabilities: Array, model: LoadedModel, plan: Plan) -> Steered:
    """The taxon/list filters alone (no place): folders of photos in the CLI."""
    vision, keep, kept_mass = _filter(probabilities, model, plan)
    return Steered(vision, vision, keep, kept_mass, GeoOutcome.not_requested(False, plan.steering.geo))


async def steer(
    probabilities: Array,
    model: LoadedModel,
    taxonomy: Taxonomy,
    plan: Plan,
    geo: GeoWeighting | None,
    place: Place | None,
    weighed: Array | None = None,
) -> Steered:
    """The filters, then the place (``plan.steering.geo``), on one model's probabilities.
    ``weighed``: what the place weighs when it is not ``probabilities``: the model's own answer
    hands its calibrated probabilities, so that the prior multiplies honest probabilities on
    every way in (a raw, overconfident or flat output would let the weights overturn a ranking
    the calibrated one keeps) while ``vision`` stays the model's own."""
    vision, keep, kept_mass = _filter(probabilities, model, plan)
    mode = plan.steering.geo
    if mode == "off":
        return Steered(vision, vision, keep, kept_mass, GeoOutcome.off())
    if place is None:
        return Steered(vision, vision, keep, kept_mass, GeoOutcome.not_requested(False, mode))
    if geo is None:
        outcome = GeoOutcome("unavailable", "this caller has no GBIF client for the place", mode=mode)
        return Steered(vision, vision, keep, kept_mass, outcome)
    background = model.spec.background_index
    prior_on = vision if weighed is None else _filter(weighed, model, plan)[0]
    scores, outcome = await geo.apply(
        prior_on, model.labels, taxonomy, place.lat, place.lon, place.month, background, mode
    )
    if outcome.recorded is None:
        return Steered(scores, vision, keep, kept_mass, outcome)
    candidates = keep if keep is not None else species_mask(model)
    allowed = candidates & outcome.recorded
    ancestor = recorded_ancestor(vision, candidates, allowed, model.labels, taxonomy)
    return Steered(scores, vision, allowed, kept_mass, outcome, ancestor)


def recorded_ancestor(
    vision: Array, candidates: Mask, allowed: Mask, labels: list[Label], taxonomy: Taxonomy
) -> Rollup | None:
    """When geo=filter removed the photos' best species: its nearest ancestor (genus, family,
    ...) with a species the filter kept, scored by the vision's sum over the ancestor's species
    (the vision says that much for the ancestor, and GBIF has it here)."""
    if not candidates.any():
        return None
    best = int(np.argmax(np.where(candidates, vision, -1.0)))
    if allowed[best]:
        return None
    top = labels[best].scientific_name
    linked = taxonomy.get(top)
    if linked is None:
        return None
    indices = np.flatnonzero(candidates)
    for rank in ROLLUP_RANKS:
        place = linked.at(rank)
        if place is None:
            continue
        under = [
            int(i)
            for i in indices
            if (t := taxonomy.get(labels[i].scientific_name)) is not None and same_place(t, linked, rank)
        ]
        if any(allowed[i] for i in under):
            reason = (
                f"geo=filter: {top}, the photos' best species ({float(vision[best]):.3f}), has no "
                f"record in the cell; {rank} {place[0]} has recorded species there"
            )
            score = min(float(vision[under].sum(dtype=np.float64)), 1.0)
            return Rollup(
                rank=rank, name=place[0], usageKey=place[1], score=score, reason=reason, source=linked.source
            )
    return None
