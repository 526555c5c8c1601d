"""Stage 1, the plan, decided before any photo is read. In: the models a request names (or its
groups) and its steering. Out: a ``Plan``: the models to ask and, when the request filters,
which of each model's classes it keeps. An unknown group, model or taxon, or filters that keep
nothing, cost no download: they are refused here (400/404/409/503).

- a ``taxon`` (a scientific name of any rank: ``Lepidoptera``, ``Vanessa``, ``Danaus plexippus``,
  or a key of the taxonomy in use: GBIF's, or NCBI's taxid where the labels are classified by the
  shipped NCBI file) is resolved in the models' taxonomy files (what ``link-gbif`` wrote, over
  what ``build-taxonomy`` shipped), never by asking GBIF: a request costs no call. A kingdom is
  found by either taxonomy's name (``Metazoa`` or ``Animalia``, ``Viridiplantae`` or
  ``Plantae``), and resolves to GBIF's; the same taxon named by both taxonomies (a label map
  linked partly by GBIF) is one taxon;
- a ``species_list`` keeps the classes it names; a name no model asked has comes back in
  ``unmatched``.

The kept species' probabilities are later divided by what they held together (``steer``), so
they sum to 1. The background class is no species: never kept, and whether it wins stays the
model's call on its raw output (a filter narrows the species; it does not make a photo show an
organism). A model with none of its classes kept is not asked.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.enrich.taxonomies import Taxonomy, TaxonomyBook
from app.enrich.taxonomy import ROLLUP_RANKS, Source, Taxon, canonical_kingdom, is_hybrid
from app.errors import BadRequest, ModelUnavailable, TaxonomyMissing, UnknownTaxon
from app.identification.request import Steering
from app.identification.species_lists import SpeciesList, normalise
from app.models.registry import LoadedModel, Registry
from app.settings import RankingSettings

Mask = npt.NDArray[np.bool_]


# --- which models --------------------------------------------------------------------------


def classifiers(registry: Registry, model: str | None, groups: frozenset[str] | None) -> list[LoadedModel]:
    """The named classifier (404/503 when it is unknown or not ready), or every ready one (of
    ``groups``, when given: 400 for a group no model serves)."""
    if model is not None:
        return [registry.get_ready(model, task="classifier")]
    found = [m for m in registry.entries() if m.spec.task == "classifier"]
    if groups is not None:
        known = {m.spec.group for m in found if m.spec.group}
        unknown = sorted(groups - known)
        if unknown:
            raise BadRequest(
                f"no model serves the group(s) {unknown}: choose from {sorted(known)}",
                detail={"unknown": unknown, "groups": sorted(known)},
            )
        found = [m for m in found if m.spec.group in groups]
    ready = [m for m in found if m.state == "ready" and m.scope is not None]
    if not ready:
        raise ModelUnavailable(
            "no classifier is ready to identify the photos",
            detail={"models": {m.spec.name: m.state for m in found}},
            headers={"Retry-After": "5"},
        )
    return ready


# --- a taxon filter --------------------------------------------------------------------------


def link_hint(names: list[str]) -> str:
    return "; ".join(f"python -m app link-gbif --model {name}" for name in names)


@dataclass(frozen=True, slots=True)
class ResolvedTaxon:
    key: int | None  # the key in ``source``'s taxonomy (the fake GBIF's in the tests)
    name: str  # a kingdom by GBIF's name (Animalia for NCBI's Metazoa)
    rank: str  # lower case, GBIF's words: kingdom ... genus, species, subspecies
    source: Source = "gbif"
    # Tells apart, across taxonomies (where only names compare), a genus of plants from one of
    # animals that share its name.
    kingdom: str | None = None


def _places(label: str, taxon: Taxon) -> Iterator[ResolvedTaxon]:
    """Every taxon a label's classification names, the label's own usage included."""
    source, kingdom = taxon.source, taxon.kingdom
    for rank in ROLLUP_RANKS:
        at = taxon.at(rank)
        if at is not None:
            yield ResolvedTaxon(at[1], at[0], rank, source, kingdom)
    rank = (taxon.rank or "species").lower()
    yield ResolvedTaxon(taxon.usageKey, taxon.canonicalName or label, rank, source, kingdom)
    if taxon.speciesKey is not None and taxon.speciesKey != taxon.usageKey and taxon.rank == "SPECIES":
        # a synonym's accepted species
        yield ResolvedTaxon(taxon.speciesKey, taxon.canonicalName or label, "species", source, kingdom)
    if not taxon.exact:
        # The offline taxonomy classified the label by its species or genus: the label's own
        # name has no key there, but a filter naming it still means this label.
        own = "subspecies" if len(label.split()) == 3 and not is_hybrid(label) else "species"
        yield ResolvedTaxon(None, label, own, source, kingdom)


def _kingdoms_agree(a: str | None, b: str | None) -> bool:
    return a is None or b is None or normalise(canonical_kingdom(a)) == normalise(canonical_kingdom(b))


def _one_per_taxon(places: Iterable[ResolvedTaxon]) -> list[ResolvedTaxon]:
    """The places found, a taxon that both taxonomies name (same rank, name and kingdom) once,
    by GBIF's key where GBIF names it; two keys of one taxonomy stay two (homonyms). A place
    without a key (a kingdom NCBI does not name, a label's own name) is the keyed one's."""

    def same(a: ResolvedTaxon, b: ResolvedTaxon) -> bool:
        return (
            a.rank == b.rank
            and normalise(a.name) == normalise(b.name)
            and _kingdoms_agree(a.kingdom, b.kingdom)
            and (a.source != b.source or a.key is None or b.key is None or a.key == b.key)
        )

    groups: list[dict[str, ResolvedTaxon]] = []
    for place in places:
        group = next((g for g in groups if all(same(p, place) for p in g.values())), None)
        if group is None:
            groups.append({place.source: place})
        elif group.get(place.source) is None or group[place.source].key is None:
            group[place.source] = place
    return [group.get("gbif") or next(iter(group.values())) for group in groups]


@dataclass(frozen=True)
class _TaxonIndex:
    by_key: dict[int, list[ResolvedTaxon]]
    by_name: dict[str, list[ResolvedTaxon]]


# Derived from a taxonomy dict, which TaxonomyBook hands out unchanged until link-gbif rewrites
# the file: indexing ~1000 labels' classifications costs ~15 ms, a look-up then microseconds.
# The dict itself is held beside its index, so its id is not reused while cached.
_INDEXES: dict[int, tuple[Taxonomy, _TaxonIndex]] = {}
_MAX_INDEXES = 16


def _index(taxonomy: Taxonomy) -> _TaxonIndex:
    cached = _INDEXES.get(id(taxonomy))
    if cached is not None and cached[0] is taxonomy:
        return cached[1]
    by_key: dict[int, list[ResolvedTaxon]] = {}
    by_name: dict[str, list[ResolvedTaxon]] = {}
    for label, taxon in taxonomy.items():
        for place in _places(label, taxon):
            if place.key is not None:
                by_key.setdefault(place.key, []).append(place)
            by_name.setdefault(normalise(place.name), []).append(place)
    index = _TaxonIndex(by_key, by_name)
    if len(_INDEXES) >= _MAX_INDEXES:
        _INDEXES.clear()
    _INDEXES[id(taxonomy)] = (taxonomy, index)
    return index


def resolve_taxon(query: str, taxonomies: Mapping[str, Taxonomy]) -> ResolvedTaxon:
    """``query`` (a key of the taxonomy in use, or a name matched case-insensitively at any rank;
    a kingdom by either taxonomy's name) in the models' taxonomies (model name -> its taxonomy;
    empty when the model has none)."""
    text = query.strip()
    if not text:
        raise BadRequest("taxon is empty: give a scientific name of any rank or a GBIF key")
    linked = {model: taxonomy for model, taxonomy in taxonomies.items() if taxonomy}
    unlinked = sorted(set(taxonomies) - set(linked))
    if not linked:
        raise TaxonomyMissing(
            f"a taxon filter needs the models' taxonomy, and {', '.join(unlinked)} has none: "
            f"run {link_hint(unlinked)}",
            detail={"taxon": text, "unlinked": unlinked},
        )
    found: dict[tuple[str, int] | str, ResolvedTaxon] = {}
    for taxonomy in linked.values():
        index = _index(taxonomy)
        places = (
            index.by_key.get(int(text), [])
            if text.isascii() and text.isdigit()
            else index.by_name.get(normalise(canonical_kingdom(text)), [])
        )
        for place in places:
            found.setdefault(
                (place.source, place.key) if place.key is not None else normalise(place.name), place
            )
    taxa = _one_per_taxon(found.values())
    if not taxa:
        where = f"the taxonomy of {', '.join(sorted(linked))}"
        if unlinked:
            raise TaxonomyMissing(
                f"taxon {text!r} is not in {where}, and {', '.join(unlinked)} has no taxonomy to look in: "
                f"run {link_hint(unlinked)}, or restrict the models with groups",
                detail={"taxon": text, "unlinked": unlinked, "linked": sorted(linked)},
            )
        raise UnknownTaxon(
            f"taxon {text!r} is not in {where}: give a scientific name of any rank the models' labels "
            "are classified under (e.g. Lepidoptera, Vanessa, Danaus plexippus) or its key (GBIF's, "
            "or NCBI's where the labels are classified by NCBI)",
            detail={"taxon": text, "linked": sorted(linked)},
        )
    if len(taxa) > 1:
        candidates = [{"key": p.key, "name": p.name, "rank": p.rank, "source": p.source} for p in taxa]
        raise BadRequest(
            f"taxon {text!r} names {len(taxa)} taxa: give the key of the one meant",
            detail={"taxon": text, "candidates": candidates},
        )
    return taxa[0]


def is_under(label: str, taxon: Taxon | None, target: ResolvedTaxon) -> bool:
    """Whether the label (its linked taxon, when it has one) is the target or below it: by key
    within the target's taxonomy, by name (and kingdom) across taxonomies."""
    if target.rank in ROLLUP_RANKS:
        if taxon is None:
            # An unlinked label (a subspecies GBIF did not match exactly): a binomial starts with
            # its genus, so the genus is still known.
            return target.rank == "genus" and normalise(label.split(" ", 1)[0]) == normalise(target.name)
        at = taxon.at(target.rank)
        if at is None:
            return False
        if taxon.source == target.source and at[1] is not None and target.key is not None:
            return at[1] == target.key
        same_name = normalise(canonical_kingdom(at[0])) == normalise(canonical_kingdom(target.name))
        return same_name and _kingdoms_agree(taxon.kingdom, target.kingdom)
    if (
        taxon is not None
        and target.key is not None
        and taxon.source == target.source
        and target.key in (taxon.usageKey, taxon.speciesKey)
    ):
        return True
    name, wanted = normalise(label), normalise(target.name)
    return name == wanted or name.startswith(wanted + " ")  # a subspecies label under its species


# --- what the filters keep of a model ---------------------------------------------------------


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
            if linked is not None and linked.canonicalName and linked.exact:
                # The list may use GBIF's accepted spelling; not a species or genus the offline
                # taxonomy took in the label's place, which would stand for other species too.
                names.add(normalise(linked.canonicalName))
            hits = names & listed.keys.keys()
            matched |= hits
            mask[i] = bool(hits)
        if taxon is not None and not is_under(label.scientific_name, linked, taxon):
            mask[i] = False
    return mask, matched


# --- the plan ------------------------------------------------------------------------------


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
                f"no taxonomy to filter on: run python -m app link-gbif --model {model.name}"
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
