"""A request's steering (``app.services.steering``) applied to one model's probabilities: the
taxon/list filters (the kept species renormalised), then the place (``geo``: off, prior or
filter), and the rollup the answer reports; plus what the answer says about the filters."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.taxonomies import Taxonomy
from app.enrich.taxonomy import ROLLUP_RANKS, Rollup, rollup
from app.models.registry import LoadedModel
from app.services.geo import GeoOutcome, GeoWeighting, Place
from app.services.species_lists import SpeciesList
from app.services.steering import Mask, Plan, species_mask
from app.services.taxon_filter import ResolvedTaxon

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Steered:
    scores: Array  # [C] the final (combined) probabilities; 0 for species not kept
    vision: Array  # [C] after the taxon/list filter, before the place
    keep: Mask | None  # the classes the answer may list; None: every species
    kept_mass: float | None  # what the kept species held before renormalising; None: no filter
    geo: GeoOutcome
    rollup: Rollup | None = None  # geo=filter removed the best species: its nearest recorded ancestor

    @classmethod
    def unsteered(cls, probabilities: Array, geo: GeoOutcome) -> Steered:
        vision = geo.vision if geo.vision is not None else probabilities
        return cls(probabilities, vision, None, None, geo)


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


def narrow_now(probabilities: Array, model: LoadedModel, plan: Plan) -> Steered:
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
) -> Steered:
    """The filters, then the place (``plan.steering.geo``), on one model's probabilities."""
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
    scores, outcome = await geo.apply(
        vision, model.labels, taxonomy, place.lat, place.lon, place.month, background, mode
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
            if (t := taxonomy.get(labels[i].scientific_name)) is not None and t.at(rank) == place
        ]
        if any(allowed[i] for i in under):
            reason = (
                f"geo=filter: {top}, the photos' best species ({float(vision[best]):.3f}), has no GBIF "
                f"record in the cell; {rank} {place[0]} has recorded species there"
            )
            score = min(float(vision[under].sum(dtype=np.float64)), 1.0)
            return Rollup(rank=rank, name=place[0], usageKey=place[1], score=score, reason=reason)
    return None


def below_filter(found: Rollup | None, taxon: ResolvedTaxon | None) -> Rollup | None:
    """A rollup to the filter's own taxon or above says nothing: renormalised, the kept species
    sum to 1 there by construction (taxon=Vanessa would always "roll up" to genus Vanessa)."""
    if found is None or taxon is None or found.reason is not None:
        return found
    if taxon.rank not in ROLLUP_RANKS:
        return None  # a species filter: every taxon above it holds it all
    return found if ROLLUP_RANKS.index(found.rank) < ROLLUP_RANKS.index(taxon.rank) else None


def answer_rollup(
    steered: Steered,
    model: LoadedModel,
    taxonomy: Taxonomy,
    threshold: float,
    taxon: ResolvedTaxon | None,
    floor: float = 0.0,
) -> Rollup | None:
    """The taxon an answer reports when no species is confident: geo=filter's recorded ancestor,
    else the deepest taxon whose kept species (those scoring above ``floor``) reach
    ``threshold`` together; never the filter's own taxon or above (``below_filter``)."""
    scores, keep, background = steered.scores, steered.keep, model.spec.background_index
    found = steered.rollup or rollup(
        (
            (model.labels[i].scientific_name, float(scores[i]))
            for i in np.flatnonzero(scores > floor)
            if i != background and (keep is None or keep[i])
        ),
        taxonomy,
        threshold,
    )
    return below_filter(found, taxon)


# --- what the answer says about it -----------------------------------------------------------


@dataclass(frozen=True)
class FilterReport:
    taxon: ResolvedTaxon | None
    species_list: SpeciesList | None
    unmatched: tuple[str, ...]
    excluded: dict[str, str]
    kept_classes: int | None  # of the answering model; None when no model answered
    kept_mass: float | None


def report(plan: Plan, model: str | None, steered: Steered | None) -> FilterReport | None:
    if not plan.filtering:
        return None
    keep = plan.keep.get(model) if model is not None else None
    return FilterReport(
        plan.taxon,
        plan.steering.species_list,
        plan.unmatched,
        plan.excluded,
        int(keep.sum()) if keep is not None else None,
        steered.kept_mass if steered is not None and keep is not None else None,
    )
