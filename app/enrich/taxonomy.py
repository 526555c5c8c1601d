"""GBIF taxonomy joined onto labels, and the common-ancestor rollup.

``link-gbif`` writes one JSON line per label (``LinkedName``); the service loads the file once
and joins it by scientific name, so no request ever waits on GBIF.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

log = logging.getLogger(__name__)

# From the deepest rank above species up to the kingdom: the order a rollup climbs.
ROLLUP_RANKS = ("genus", "family", "order", "class", "phylum", "kingdom")


class Taxon(BaseModel):
    """A GBIF backbone usage and its classification (GBIF's own field names)."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    usageKey: int  # GBIF's field names are the contract
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

    @property
    def species_key(self) -> int | None:
        """The key GBIF files this species' occurrences under (their ``speciesKey``): speciesKey,
        else the usageKey of a SPECIES usage (older taxonomy files), else None (a genus, say)."""
        if self.speciesKey is not None:
            return self.speciesKey
        return self.usageKey if self.rank == "SPECIES" else None

    def at(self, rank: str) -> tuple[str, int | None] | None:
        name = getattr(self, "class_" if rank == "class" else rank)
        return (name, getattr(self, f"{rank}Key")) if name else None


class LinkedName(BaseModel):
    """One label's outcome in a taxonomy file: a taxon only for an EXACT match."""

    name: str
    matchType: str
    confidence: int | None = None
    taxon: Taxon | None = None
    suggestion: str | None = Field(default=None, description="what GBIF proposed when not EXACT")


class Rollup(BaseModel):
    rank: str = Field(description="genus, family, order, class, phylum or kingdom")
    name: str
    usageKey: int | None = Field(description="GBIF key of the taxon")
    score: float = Field(ge=0.0, le=1.0, description="summed score of the species under it")
    reason: str | None = Field(
        default=None,
        description="why a taxon is reported rather than the best species, when not the threshold",
    )


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
    """When no species reaches ``threshold``, the deepest taxon whose species' scores sum to it."""
    if not taxonomy:  # before touching the scores: most models have none, and this is per request
        return None
    pairs = [(name, score) for name, score in scored if score > 0]
    if not pairs or max(score for _, score in pairs) >= threshold:
        return None
    for rank in ROLLUP_RANKS:
        sums: dict[tuple[str, int | None], float] = defaultdict(float)
        for name, score in pairs:
            taxon = taxonomy.get(name)
            place = taxon.at(rank) if taxon is not None else None
            if place is not None:
                sums[place] += score
        if sums:
            (taxon_name, key), total = max(sums.items(), key=lambda item: (item[1], item[0][0]))
            if total >= threshold:
                return Rollup(rank=rank, name=taxon_name, usageKey=key, score=min(total, 1.0))
    return None
