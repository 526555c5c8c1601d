"""What an observation's answer names, once the photos are combined and a model chosen
(``verdicts``): its ranked species, the no-match reason (``not_an_organism``, ``out_of_scope``,
``low_confidence``, ``filtered_out``) and the rollup."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from app.core import Label
from app.enrich.taxonomies import TaxonomyBook
from app.enrich.taxonomy import Rollup, Taxon
from app.ranking import filtered_out
from app.services.geo import GeoOutcome
from app.services.steered import Steered, answer_rollup
from app.services.steering import Plan
from app.services.verdicts import ModelVerdict

NOT_AN_ORGANISM_BACKGROUND = 0.5  # every model's background class at least this: no organism
ObservationNoMatch = Literal["not_an_organism", "out_of_scope", "low_confidence", "filtered_out"]


@dataclass(frozen=True)
class ObservedSpecies:
    rank: int
    model: str
    group: str | None
    index: int
    label: Label
    score: float  # the observation's calibrated probability (after the geo prior when applied)
    vision_score: float  # before the geo prior (after the taxon/list filters)
    per_photo: list[float]  # each photo's calibrated probability for this species
    taxon: Taxon | None
    geo_weight: float | None  # the prior's w(n); None without the place
    geo_records: int | None  # GBIF occurrences of the species in the cell
    geo_score: float | None = None  # what the place multiplied it by: w(n), or 1 under geo=filter


@dataclass(frozen=True)
class Decision:
    species: list[ObservedSpecies]
    no_match_reason: ObservationNoMatch | None
    rollup: Rollup | None


def decide(
    chosen: ModelVerdict,
    verdicts: list[ModelVerdict],
    plan: Plan,
    taxonomies: TaxonomyBook,
    top_k: int,
    steered: Steered | None = None,
) -> Decision:
    """``plan``: the request's thresholds and filters; ``steered``: the chosen model's species
    after the filters and the place (None: as the verdict has them, no place)."""
    if not chosen.accepted:
        organism = any(v.background is None or v.background < NOT_AN_ORGANISM_BACKGROUND for v in verdicts)
        return Decision([], "out_of_scope" if organism else "not_an_organism", None)
    model, background = chosen.model, chosen.model.spec.background_index
    taxonomy = taxonomies.get(model.taxonomy_path)
    steered = steered or Steered.unsteered(chosen.probabilities, GeoOutcome.not_requested(False))
    scores, vision, keep = steered.scores, steered.vision, steered.keep
    species_scores = np.asarray(scores, dtype=np.float64).copy()
    if background is not None:
        species_scores[background] = -1.0
    listable = len(species_scores) - (background is not None)
    if keep is not None:
        # Only what the filters keep, and of it what holds any probability (a geo filter
        # leaves the unrecorded at 0: they are not guesses).
        species_scores[~(keep & (species_scores > 0))] = -1.0
        listable = int((species_scores >= 0).sum())
    order = np.argsort(-species_scores, kind="stable")[: min(top_k, listable)]
    factors = steered.geo.factors()
    records = steered.geo.records
    species = [
        ObservedSpecies(
            rank=rank,
            model=model.name,
            group=model.spec.group,
            index=int(i),
            label=model.labels[i],
            score=float(scores[i]),
            vision_score=float(vision[i]),
            per_photo=[float(p) for p in chosen.per_photo[:, i]],
            taxon=taxonomy.get(model.labels[i].scientific_name),
            geo_weight=float(steered.geo.weights[i]) if steered.geo.weights is not None else None,
            geo_records=int(records[i]) if records is not None else None,
            geo_score=float(factors[i]) if factors is not None else None,
        )
        for rank, i in enumerate(order, 1)
    ]
    summed = answer_rollup(steered, model, taxonomy, plan.rollup_threshold, plan.taxon, floor=1e-4)
    # Kept species that held less than min_score together: renormalised they may look sure,
    # but the photos look like none of them (ranking.filtered_out). A geo filter that kept
    # nothing (no species recorded there) lists none.
    if keep is not None and (not species or filtered_out(chosen.probabilities, keep, plan.min_score)):
        return Decision(species, "filtered_out", summed)
    confident = species[0].score >= plan.min_score
    return Decision(species, None if confident else "low_confidence", summed)
