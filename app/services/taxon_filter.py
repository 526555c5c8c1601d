"""A ``taxon`` filter: a GBIF key or a scientific name of any rank (``Lepidoptera``, ``Vanessa``,
``Danaus plexippus``), resolved in the models' GBIF taxonomy files (what ``link-gbif`` wrote: each
label's classification with its keys), never by asking GBIF: a request costs no call, and only
what the labels were linked to can be filtered on anyway."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from app.enrich.taxonomies import Taxonomy
from app.enrich.taxonomy import ROLLUP_RANKS, Taxon
from app.errors import BadRequest, TaxonomyMissing, UnknownTaxon


def normalise(name: str) -> str:
    """Names compare case-insensitively, whatever the spacing: ``vanessa  Cardui`` is Vanessa cardui."""
    return " ".join(name.split()).casefold()


def link_hint(names: list[str]) -> str:
    return "; ".join(f"python -m app link-gbif --model {name}" for name in names)


@dataclass(frozen=True, slots=True)
class ResolvedTaxon:
    key: int | None  # GBIF's key (the fake GBIF's in the tests)
    name: str
    rank: str  # lower case, GBIF's words: kingdom ... genus, species, subspecies


def _places(label: str, taxon: Taxon) -> Iterator[ResolvedTaxon]:
    """Every taxon a label's classification names, the label's own usage included."""
    for rank in ROLLUP_RANKS:
        at = taxon.at(rank)
        if at is not None:
            yield ResolvedTaxon(at[1], at[0], rank)
    yield ResolvedTaxon(taxon.usageKey, taxon.canonicalName or label, (taxon.rank or "species").lower())
    if taxon.speciesKey is not None and taxon.speciesKey != taxon.usageKey and taxon.rank == "SPECIES":
        yield ResolvedTaxon(taxon.speciesKey, taxon.canonicalName or label, "species")  # a synonym's accepted


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
    """``query`` (a GBIF key, or a name matched case-insensitively at any rank) in the models'
    taxonomies (model name -> its taxonomy; empty when the model was never linked)."""
    text = query.strip()
    if not text:
        raise BadRequest("taxon is empty: give a scientific name of any rank or a GBIF key")
    linked = {model: taxonomy for model, taxonomy in taxonomies.items() if taxonomy}
    unlinked = sorted(set(taxonomies) - set(linked))
    if not linked:
        raise TaxonomyMissing(
            f"a taxon filter needs the models' GBIF taxonomy, and {', '.join(unlinked)} has none: "
            f"run {link_hint(unlinked)}",
            detail={"taxon": text, "unlinked": unlinked},
        )
    found: dict[int | str, ResolvedTaxon] = {}
    for taxonomy in linked.values():
        index = _index(taxonomy)
        places = index.by_key.get(int(text), []) if text.isdigit() else index.by_name.get(normalise(text), [])
        for place in places:
            found.setdefault(place.key if place.key is not None else normalise(place.name), place)
    if not found:
        where = f"the GBIF taxonomy of {', '.join(sorted(linked))}"
        if unlinked:
            raise TaxonomyMissing(
                f"taxon {text!r} is not in {where}, and {', '.join(unlinked)} has no taxonomy to look in: "
                f"run {link_hint(unlinked)}, or restrict the models with groups",
                detail={"taxon": text, "unlinked": unlinked, "linked": sorted(linked)},
            )
        raise UnknownTaxon(
            f"taxon {text!r} is not in {where}: give a scientific name of any rank the models' labels "
            "are classified under (e.g. Lepidoptera, Vanessa, Danaus plexippus) or its GBIF key",
            detail={"taxon": text, "linked": sorted(linked)},
        )
    if len(found) > 1:
        candidates = [{"key": p.key, "name": p.name, "rank": p.rank} for p in found.values()]
        raise BadRequest(
            f"taxon {text!r} names {len(found)} taxa: give the GBIF key of the one meant",
            detail={"taxon": text, "candidates": candidates},
        )
    return next(iter(found.values()))


def is_under(label: str, taxon: Taxon | None, target: ResolvedTaxon) -> bool:
    """Whether the label (its linked taxon, when it has one) is the target or below it."""
    if target.rank in ROLLUP_RANKS:
        if taxon is None:
            # An unlinked label (a subspecies GBIF did not match exactly): a binomial starts with
            # its genus, so the genus is still known.
            return target.rank == "genus" and normalise(label.split(" ", 1)[0]) == normalise(target.name)
        at = taxon.at(target.rank)
        if at is None:
            return False
        if at[1] is not None and target.key is not None:
            return at[1] == target.key
        return normalise(at[0]) == normalise(target.name)
    if taxon is not None and target.key is not None and target.key in (taxon.usageKey, taxon.speciesKey):
        return True
    name, wanted = normalise(label), normalise(target.name)
    return name == wanted or name.startswith(wanted + " ")  # a subspecies label under its species
