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

This module decides the plan (before any photo is read); ``app.services.steered`` applies it to a
model's probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.enrich.taxonomies import Taxonomy, TaxonomyBook
from app.errors import BadRequest, TaxonomyMissing
from app.models.registry import LoadedModel
from app.services.geo import GeoMode
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
