"""Steering an answer: what a user narrows it to, what the place does, and their own thresholds;
one module for /v1/identify (``ObservationService``), the classifier endpoints (``Identifier``)
and the CLI, so every way in ranks the same.

- ``taxon``: a GBIF key or a scientific name of any rank (``app.services.taxon_filter``).
- ``species_list``: scientific names, uploaded or installed (``app.services.species_lists``).
  A name no model asked has comes back in ``unmatched``.

Both keep a set of each model's classes, and a model with none kept is not asked. The kept
species' probabilities are divided by ``kept_mass``, what they held together, so they sum to 1:
the probability of each *given that it is one of the kept species*. The background class is no
species: never kept, and whether it wins stays the model's call on its raw output (a filter
narrows the species, it does not make a photo show an organism).

- ``geo``: ``off`` ignores the place; ``prior`` (default) weighs the species by GBIF's records in
  the cell; ``filter`` keeps only the recorded ones (``app.services.geo``), and when that removes
  the photos' best species, the answer names its nearest ancestor that has recorded species.
- ``min_score``, ``rollup_threshold``: per request, in place of MIN_SCORE and ROLLUP_THRESHOLD.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.taxonomies import Taxonomy, TaxonomyBook
from app.enrich.taxonomy import ROLLUP_RANKS, Rollup
from app.errors import BadRequest, TaxonomyMissing
from app.models.registry import LoadedModel
from app.services.geo import GeoMode, GeoOutcome, GeoWeighting, Place
from app.services.species_lists import SpeciesList
from app.services.taxon_filter import ResolvedTaxon, is_under, link_hint, normalise, resolve_taxon
from app.settings import RankingSettings

Array = npt.NDArray[np.float32]
Mask = npt.NDArray[np.bool_]


# --- what a request asks for -----------------------------------------------------------------


@dataclass(frozen=True)
class Steering:
    taxon: str | None = None
    species_list: SpeciesList | None = None
    geo: GeoMode = "prior"
    min_score: float | None = None  # None: MIN_SCORE
    rollup_threshold: float | None = None  # None: ROLLUP_THRESHOLD

    def __post_init__(self) -> None:
        # The API bounds these already; the CLI and callers in code get the same refusal.
        if self.min_score is not None and not 0.0 <= self.min_score <= 1.0:
            raise BadRequest(
                f"min_score {self.min_score} is not in [0, 1]", detail={"min_score": self.min_score}
            )
        if self.rollup_threshold is not None and not 0.0 < self.rollup_threshold <= 1.0:
            raise BadRequest(
                f"rollup_threshold {self.rollup_threshold} is not in (0, 1]",
                detail={"rollup_threshold": self.rollup_threshold},
            )

    @property
    def filtering(self) -> bool:
        return self.taxon is not None or self.species_list is not None


def species_mask(model: LoadedModel) -> Mask:
    mask = np.ones(len(model.labels), dtype=bool)
    if model.spec.background_index is not None:
        mask[model.spec.background_index] = False
    return mask


def kept_classes(
    model: LoadedModel, taxonomy: Taxonomy, taxon: ResolvedTaxon | None, listed: SpeciesList | None
) -> tuple[Mask, set[str]]:
    """The model's classes the filters keep, and the list's names (normalised) it has (whether
    or not the taxon keeps them: "unmatched" means a name no model has)."""
    mask = species_mask(model)
    matched: set[str] = set()
    for i, label in enumerate(model.labels):
        if not mask[i]:
            continue
        linked = taxonomy.get(label.scientific_name)
        if listed is not None:
            names = {normalise(label.scientific_name)}
            if linked is not None and linked.canonicalName:
                names.add(normalise(linked.canonicalName))  # the list may use GBIF's accepted spelling
            hits = names & listed.keys.keys()
            matched |= hits
            mask[i] = bool(hits)
        if taxon is not None and not is_under(label.scientific_name, linked, taxon):
            mask[i] = False
    return mask, matched


# --- the plan: decided before any photo is read ----------------------------------------------


@dataclass(frozen=True)
class Plan:
    models: list[LoadedModel]  # those to ask: every one given, less those the filters leave empty
    steering: Steering
    min_score: float
    rollup_threshold: float
    taxon: ResolvedTaxon | None = None
    keep: dict[str, Mask] = field(default_factory=dict)  # model -> the classes kept (when filtering)
    unmatched: tuple[str, ...] = ()  # the list's names no model given has
    excluded: dict[str, str] = field(default_factory=dict)  # model -> why it is not asked

    @property
    def filtering(self) -> bool:
        return self.steering.filtering


def plan_for(
    models: list[LoadedModel], taxonomies: TaxonomyBook, steering: Steering, ranking: RankingSettings
) -> Plan:
    """What the filters keep of each model. Refuses, before any download or inference: an
    unknown taxon (400), a taxon with no taxonomy to look in (409), filters that keep no class
    of any model (400; 409 when the models lacked a taxonomy)."""
    min_score = ranking.min_score if steering.min_score is None else steering.min_score
    threshold = ranking.rollup_threshold if steering.rollup_threshold is None else steering.rollup_threshold
    if not steering.filtering:
        return Plan(models, steering, min_score, threshold)
    books = {m.name: taxonomies.get(m.taxonomy_path) for m in models}
    taxon = resolve_taxon(steering.taxon, books) if steering.taxon is not None else None
    listed = steering.species_list
    keep: dict[str, Mask] = {}
    excluded: dict[str, str] = {}
    unlinked: list[str] = []
    matched: set[str] = set()
    for model in models:
        taxonomy = books[model.name]
        if taxon is not None and not taxonomy:
            unlinked.append(model.name)
            excluded[model.name] = (
                f"no GBIF taxonomy to filter on: run python -m app link-gbif --model {model.name}"
            )
            continue
        mask, found = kept_classes(model, taxonomy, taxon, listed)
        matched |= found
        if not mask.any():
            what = [
                f"under {taxon.rank} {taxon.name}" if taxon else "",
                f"on {listed.name}" if listed else "",
            ]
            excluded[model.name] = "none of its species is " + " and ".join(w for w in what if w)
            continue
        keep[model.name] = mask
    unmatched = tuple(name for key, name in listed.keys.items() if key not in matched) if listed else ()
    if not keep:
        detail = {"excluded": excluded, "unmatched": list(unmatched)[:100]}
        if unlinked and len(unlinked) == len(models):
            raise TaxonomyMissing(f"no model to filter on: run {link_hint(unlinked)}", detail=detail)
        raise BadRequest(
            "the filters keep no species of the models asked: "
            + "; ".join(f"{m}: {w}" for m, w in excluded.items()),
            detail=detail,
        )
    asked = [m for m in models if m.name in keep]
    return Plan(asked, steering, min_score, threshold, taxon, keep, unmatched, excluded)


# --- one model's answer, steered --------------------------------------------------------------


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


def narrow_now(probabilities: Array, model: LoadedModel, plan: Plan) -> Steered:
    """The taxon/list filters alone (no place): folders of photos in the CLI."""
    keep = plan.keep.get(model.name)
    if keep is None:
        return Steered.unsteered(probabilities, GeoOutcome.not_requested(False, plan.steering.geo))
    vision, kept_mass = narrow(probabilities, keep)
    _keep_background(vision, probabilities, model)
    return Steered(vision, vision, keep, kept_mass, GeoOutcome.not_requested(False, plan.steering.geo))


def _keep_background(narrowed: Array, probabilities: Array, model: LoadedModel) -> None:
    background = model.spec.background_index
    if background is not None:
        narrowed[background] = probabilities[background]


async def steer(
    probabilities: Array,
    model: LoadedModel,
    taxonomy: Taxonomy,
    plan: Plan,
    geo: GeoWeighting | None,
    place: Place | None,
) -> Steered:
    """The filters, then the place (``plan.steering.geo``), on one model's probabilities."""
    keep = plan.keep.get(model.name)
    vision, kept_mass = (probabilities, None) if keep is None else narrow(probabilities, keep)
    if keep is not None:
        _keep_background(vision, probabilities, model)
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
