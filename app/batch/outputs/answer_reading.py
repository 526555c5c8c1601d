"""What an answer names, read once for every output that publishes it (Camtrap DP, Darwin Core),
so both name the same taxon, place and classifier for an observation.

The taxon: the answer's best species, or, when no species is sure enough (``low_confidence``,
``filtered_out``) but the species under one higher taxon together reach the rollup threshold,
that taxon at its rank. The place: the one the answer used (which may be the photos' EXIF GPS),
else the observation's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.batch.collection import Observation, Outcome

GBIF_SPECIES = "https://www.gbif.org/species/"
NCBI_TAXON = "https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id="
SOFTWARE = "species-id"
HIGHER_RANKS = ("kingdom", "phylum", "class", "order", "family", "genus")
# A rollup is what the photos show when no species is sure enough; under the other reasons the
# chosen model does not accept the photos at all, and a taxon it sums up means nothing.
ROLLUP_REASONS = frozenset({"low_confidence", "filtered_out"})


@dataclass(frozen=True, slots=True)
class NamedTaxon:
    """The taxon an answer names: its best species, or its rollup (``rollup`` True).

    ``probability``: the species' score, or the rollup's summed score, in [0, 1]; ``rank``:
    lower case (``species``, ``genus``, ...), None when the taxonomy gives one we cannot read;
    ``higher``: kingdom to genus, as far as the taxonomy gives them."""

    scientific_name: str
    rank: str | None
    probability: float
    model: str | None
    taxon_id: str | None = None
    vernacular: str | None = None
    higher: Mapping[str, str] = field(default_factory=dict)
    rollup: bool = False


@dataclass(frozen=True, slots=True)
class Where:
    """Where and when an observation was made, as its answer used them (``where``)."""

    lat: float | None
    lon: float | None
    date: str | None  # ISO date
    source: str | None  # request, row, deployment, photo

    @property
    def located(self) -> bool:
        return self.lat is not None and self.lon is not None


def named_taxon(answer: Mapping[str, Any] | None) -> NamedTaxon | None:
    """What ``answer`` names (see the module's docstring), None when it names nothing."""
    if answer is None:
        return None
    results = [r for r in answer.get("results") or [] if isinstance(r, Mapping)]
    top = results[0] if results else None
    if top is not None and not answer.get("no_match") and top.get("scientific_name"):
        taxonomy = _mapping(top.get("taxonomy"))
        name = str(top["scientific_name"])
        # A taxonomy that fell back to the label's species or genus (the offline NCBI one, for a
        # name NCBI lacks) describes that taxon, not the label: its higher ranks hold, its rank
        # and id would mislabel the name published.
        exact = taxonomy.get("matchType") in (None, "EXACT")
        rank = str(taxonomy["rank"]).lower() if exact and taxonomy.get("rank") else None
        return NamedTaxon(
            scientific_name=name,
            rank=rank or ("subspecies" if len(name.split()) == 3 else "species"),
            probability=_probability(top.get("score")),
            model=_text(top.get("model")) or _text(answer.get("model")),
            taxon_id=taxon_id(taxonomy) if exact else None,
            vernacular=_text(top.get("common_name")),
            higher={r: str(taxonomy[r]) for r in HIGHER_RANKS if taxonomy.get(r)},
        )
    rollup = _mapping(answer.get("rollup"))
    if rollup.get("name") and answer.get("no_match_reason") in ROLLUP_REASONS:
        name = str(rollup["name"])
        rank = str(rollup.get("rank") or "").lower() or None
        higher: dict[str, str] = {}
        # The best species' taxonomy gives the ranks above the rollup's when it descends from it.
        lineage = _mapping(top.get("taxonomy")) if top is not None else {}
        if rank in HIGHER_RANKS and lineage.get(rank) == name:
            for above in HIGHER_RANKS[: HIGHER_RANKS.index(rank)]:
                if lineage.get(above):
                    higher[above] = str(lineage[above])
        if rank in HIGHER_RANKS:
            higher[rank] = name
        key = rollup.get("usageKey")
        return NamedTaxon(
            scientific_name=name,
            rank=rank,
            probability=_probability(rollup.get("score")),
            model=_text(answer.get("model")) or (_text(top.get("model")) if top is not None else None),
            # The rollup's key is of its source's taxonomy (NCBI's offline one, or GBIF's).
            taxon_id=taxon_id({"source": rollup.get("source"), "usageKey": key}) if key is not None else None,
            higher=higher,
            rollup=True,
        )
    return None


def taxon_id(taxonomy: Mapping[str, Any]) -> str | None:
    """A resolvable identifier of a linked taxon: GBIF's species page for a GBIF usage (the
    default: taxonomies without a ``source`` come from GBIF), NCBI's for an NCBI one."""
    source = str(taxonomy.get("source") or "gbif").lower()
    key = taxonomy.get("id", taxonomy.get("usageKey"))
    if key is None or key == "":
        return None
    text = str(key)
    if text.startswith(("http://", "https://")):
        return text
    if source == "gbif":
        return f"{GBIF_SPECIES}{text}"
    if source == "ncbi":
        return f"{NCBI_TAXON}{text}"
    return text if text.lower().startswith(f"{source}:") else f"{source}:{text}"


def where(outcome: Outcome) -> Where:
    """The place and date the answer used (``answer["place"]``, which may be the photos' EXIF
    GPS), else the observation's own (an answer without ``place``, or a failed observation)."""
    observation = outcome.observation
    given = observation.place
    used = (outcome.answer or {}).get("place")
    lat = lon = None
    date: str | None = None
    source: str | None = None
    if isinstance(used, Mapping):
        lat, lon = _coordinate(used.get("lat")), _coordinate(used.get("lon"))
        source = _text(used.get("source"))
        date = _text(used.get("date"))
    elif given is not None:
        lat, lon, source = given.lat, given.lon, given.source
    if lat is None or lon is None:
        lat = lon = source = None
    if date is None and given is not None and given.date is not None:
        date = given.date.isoformat()
    return Where(lat, lon, date or observation.date, source)


def classified_by(model: str | None, models: Mapping[str, str]) -> str:
    """``model version``; without a model (nothing accepted the photos), every model asked."""
    if model:
        return f"{model} {models.get(model, '')}".strip()
    return ", ".join(f"{name} {version}".strip() for name, version in sorted(models.items())) or SOFTWARE


def plain_number(value: float, places: int = 6) -> str:
    """``value`` rounded to ``places``, without trailing zeros or an exponent (1e-07 is no
    number to every reader)."""
    text = f"{value:.{places}f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def event_date(observation: Observation, place: Where) -> str | None:
    """The most precise time known: a Camtrap DP event's start/end (an ISO 8601 interval), the
    photo's timestamp, else the place's date."""
    start, end = observation.event_start, observation.event_end
    if start:
        return f"{start}/{end}" if end and end != start else start
    stamps = [p.timestamp for p in observation.photos if p.timestamp]
    if stamps:
        return f"{stamps[0]}/{stamps[-1]}" if len(stamps) > 1 and stamps[-1] != stamps[0] else stamps[0]
    return place.date


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str | None:
    return str(value) if value not in (None, "") else None


def _coordinate(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _probability(value: Any) -> float:
    number = float(value) if isinstance(value, int | float) else 0.0
    return min(max(number, 0.0), 1.0)
