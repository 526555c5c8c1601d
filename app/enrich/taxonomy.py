"""Taxonomy joined onto labels, and the common-ancestor rollup.

Two sources write the same file format, one JSON line per label (``LinkedName``): ``link-gbif``
(GBIF's backbone, where GBIF is reachable) and ``build-taxonomy`` (NCBI Taxonomy, offline, shipped
beside the manifest). The service loads the files once and joins them by scientific name, so no
request ever waits on either; where both name a label, GBIF's line wins
(``app.enrich.taxonomies``).

A taxon says its ``source`` and keeps GBIF's field names whatever the source, so clients read
both the same way. ``usageKey`` (and ``kingdomKey`` .. ``speciesKey``) are keys of the source's
taxonomy: an NCBI line's are NCBI taxids, never GBIF keys. ``kingdom`` is always GBIF's name
(Animalia, Plantae, Fungi); an NCBI line keeps NCBI's own (Metazoa, Viridiplantae) in
``ncbiKingdom``, and filters accept either (``canonical_kingdom``).
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

log = logging.getLogger(__name__)

# From the deepest rank above species up to the kingdom: the order a rollup climbs.
ROLLUP_RANKS = ("genus", "family", "order", "class", "phylum", "kingdom")

Source = Literal["gbif", "ncbi"]

# NCBI's kingdom names -> GBIF's, which every taxon's ``kingdom`` carries (Fungi is both's).
NCBI_KINGDOMS = {"Metazoa": "Animalia", "Viridiplantae": "Plantae", "Fungi": "Fungi"}
_KINGDOM_ALIASES = {name.casefold(): gbif for name, gbif in NCBI_KINGDOMS.items()}


HYBRID_SIGN = "\u00d7"  # the multiplication sign: "Anas superciliosa \u00d7 platyrhynchos"


def is_hybrid(name: str) -> bool:
    """A hybrid formula, which names no one species."""
    return HYBRID_SIGN in name or " x " in name


def canonical_kingdom(name: str) -> str:
    """GBIF's name for a kingdom given by either taxonomy's name (``Metazoa`` -> ``Animalia``);
    any other name unchanged."""
    return _KINGDOM_ALIASES.get(name.strip().casefold(), name)


class Taxon(BaseModel):
    """A usage of ``source``'s taxonomy and its classification, in GBIF's field names."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    usageKey: int  # GBIF's field names are the contract; the key is ``source``'s
    canonicalName: str | None = None
    scientificName: str | None = None
    rank: str | None = None
    status: str | None = None
    matchType: str | None = None
    kingdom: str | None = None
    phylum: str | None = None
    class_: str | None = Field(default=None, alias="class")
    order: str | None = None
    family: str | None = None
    genus: str | None = None
    kingdomKey: int | None = None
    phylumKey: int | None = None
    classKey: int | None = None
    orderKey: int | None = None
    familyKey: int | None = None
    genusKey: int | None = None
    # The accepted species' key (GBIF match answers carry it; for a synonym usageKey is the
    # synonym's own key, for a subspecies the subspecies'). Files written before it lack it.
    speciesKey: int | None = None
    # link-gbif's files predate the field: a line without one is GBIF's.
    source: Source = "gbif"
    id: int | None = None  # the usage's id in ``source`` (= usageKey); filled when absent
    vernacularName: str | None = None  # the source's common name, where it has one
    # Which fallback the offline taxonomy took for a label it does not hold by its exact name.
    fallback: str | None = None
    ncbiKingdom: str | None = None  # NCBI's kingdom name, where ``kingdom`` is GBIF's for it

    @model_validator(mode="after")
    def _id(self) -> Taxon:
        if self.id is None:
            self.id = self.usageKey
        return self

    @property
    def is_gbif(self) -> bool:
        return self.source == "gbif"

    @property
    def exact(self) -> bool:
        """The label's own name, not a species or genus taken in its place."""
        return self.matchType in (None, "EXACT")

    @property
    def species_key(self) -> int | None:
        """The key GBIF files this species' occurrences under (their ``speciesKey``): speciesKey,
        else the usageKey of a SPECIES usage (older taxonomy files), else None (a genus, say, or
        a taxon of another source: an NCBI taxid is no GBIF key, even when the numbers meet)."""
        if not self.is_gbif:
            return None
        if self.speciesKey is not None:
            return self.speciesKey
        return self.usageKey if self.rank == "SPECIES" else None

    def at(self, rank: str) -> tuple[str, int | None] | None:
        """(name, key in ``source``) of the taxon at ``rank`` (genus .. kingdom), if named."""
        name = getattr(self, "class_" if rank == "class" else rank)
        return (name, getattr(self, f"{rank}Key")) if name else None


def same_place(a: Taxon, b: Taxon, rank: str) -> bool:
    """Whether two labels' taxa name the same taxon at ``rank``: by key within one source, by
    name across sources (a label map linked partly by GBIF and partly by NCBI)."""
    here, there = a.at(rank), b.at(rank)
    if here is None or there is None:
        return False
    if a.source == b.source and here[1] is not None and there[1] is not None:
        return here[1] == there[1]
    return canonical_kingdom(here[0]).casefold() == canonical_kingdom(there[0]).casefold()


class LinkedName(BaseModel):
    """One label's outcome in a taxonomy file: from GBIF, a taxon only for an EXACT match; from
    NCBI, also for a fallback (``matchType`` FALLBACK_SPECIES or FALLBACK_GENUS, said in words in
    ``fallback``)."""

    name: str
    matchType: str
    confidence: int | None = None
    taxon: Taxon | None = None
    suggestion: str | None = Field(default=None, description="what GBIF proposed when not EXACT")
    fallback: str | None = None


class Rollup(BaseModel):
    rank: str = Field(description="genus, family, order, class, phylum or kingdom")
    name: str
    usageKey: int | None = Field(description="key of the taxon in ``source``'s taxonomy")
    score: float = Field(ge=0.0, le=1.0, description="summed score of the species under it")
    reason: str | None = Field(
        default=None,
        description="why a taxon is reported rather than the best species, when not the threshold",
    )
    source: Source | None = Field(default=None, description="the taxonomy usageKey is a key of")


def linked_from_match(name: str, payload: dict[str, Any]) -> LinkedName:
    match_type = str(payload.get("matchType", "NONE"))
    confidence = payload.get("confidence")
    if match_type == "EXACT" and "usageKey" in payload:
        return LinkedName(
            name=name, matchType=match_type, confidence=confidence, taxon=Taxon.model_validate(payload)
        )
    return LinkedName(
        name=name, matchType=match_type, confidence=confidence, suggestion=payload.get("scientificName")
    )


def read_linked(path: Path) -> list[LinkedName]:
    if not path.exists():
        return []
    linked = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            linked.append(LinkedName.model_validate(json.loads(line)))
        except (ValueError, ValidationError):
            log.warning("%s:%d: not a taxonomy line; ignored", path, number)  # e.g. a line cut by a crash
    return linked


def load_taxonomy(path: Path) -> dict[str, Taxon]:
    return {item.name: item.taxon for item in read_linked(path) if item.taxon is not None}


def rollup(
    scored: Iterable[tuple[str, float]], taxonomy: dict[str, Taxon], threshold: float
) -> Rollup | None:
    """When no species reaches ``threshold``, the deepest taxon whose species' scores sum to it.

    Species are summed by the taxon's name at each rank, so labels linked by GBIF and labels
    linked by NCBI add up under one family; the key reported is that of the source holding
    most of the sum."""
    if not taxonomy:  # before touching the scores: a model may have none, and this is per request
        return None
    pairs = [(name, score) for name, score in scored if score > 0]
    if not pairs or max(score for _, score in pairs) >= threshold:
        return None
    for rank in ROLLUP_RANKS:
        sums: dict[str, float] = defaultdict(float)
        keys: dict[str, dict[tuple[Source, int | None], float]] = defaultdict(lambda: defaultdict(float))
        for name, score in pairs:
            taxon = taxonomy.get(name)
            place = taxon.at(rank) if taxon is not None else None
            if taxon is not None and place is not None:
                sums[place[0]] += score
                keys[place[0]][(taxon.source, place[1])] += score
        if sums:
            taxon_name, total = max(sums.items(), key=lambda item: (item[1], item[0]))
            if total >= threshold:
                (source, key), _ = max(
                    keys[taxon_name].items(), key=lambda item: (item[1], item[0][0], -(item[0][1] or 0))
                )
                return Rollup(rank=rank, name=taxon_name, usageKey=key, score=min(total, 1.0), source=source)
    return None
