"""The shipped offline taxonomy (NCBI Taxonomy, volumes/models/taxonomy/, tracked) against the real
label maps, its regeneration, and how it is joined with link-gbif's file (GBIF wins per label)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from app.enrich.taxonomies import TaxonomyBook
from app.enrich.taxonomy import LinkedName, Taxon, read_linked
from app.models.labels import load_labels
from app.models.loaded import TaxonomyFiles
from app.models.manifest import load_manifest
from tests.support.manifests import SHIPPED_MANIFEST
from tests.support.shared import MODELS

CLASSIFIERS = {  # model -> (the class every taxon is in, GBIF's kingdom name, NCBI's)
    "aiy_birds_v1": ("Aves", "Animalia", "Metazoa"),
    "aiy_insects_v1": ("Insecta", "Animalia", "Metazoa"),
    "aiy_plants_v1": (None, "Plantae", "Viridiplantae"),
}
# What NCBI Taxonomy finds by the label's exact name (the issue measured the same): a rebuild on
# a later snapshot may find more, never fewer.
EXACT_AT_LEAST = {"aiy_birds_v1": 901, "aiy_insects_v1": 931, "aiy_plants_v1": 1956}
MATCH_TYPES = {"EXACT", "FALLBACK_SPECIES", "FALLBACK_GENUS", "FALLBACK_SCOPE", "NONE"}
HIGHER = ("kingdom", "phylum", "class", "order", "family", "genus")
MANIFEST = load_manifest(SHIPPED_MANIFEST)
SPECS = {spec.name: spec for spec in MANIFEST.models}


def shipped_file(model: str) -> Path:
    spec = SPECS[model]
    assert spec.offline_taxonomy is not None, f"{model} declares no offline_taxonomy"
    return MANIFEST.resolve(spec.offline_taxonomy, spec)


def label_names(model: str) -> list[str]:
    """The model's non-background labels, from the installed volume or else ../shared (the
    plants' weights are absent, their label map is not); skipped when neither has them."""
    spec = SPECS[model]
    assert spec.labels is not None
    for path in (MANIFEST.resolve(spec.labels, spec), MODELS / model / "labelmap.csv"):
        if path.is_file():
            labels = load_labels(path)
            return [label.scientific_name for i, label in enumerate(labels) if i != spec.background_index]
    pytest.skip(f"no label map for {model}: run `make models`")


def test_every_shipped_classifier_declares_a_tracked_offline_taxonomy():
    for model in CLASSIFIERS:
        path = shipped_file(model)
        assert path.parent == SHIPPED_MANIFEST.parent / "taxonomy" and path.is_file(), path
        assert path.stat().st_size < 2_000_000  # small: text, tracked and shipped with the manifest


@pytest.mark.parametrize("model", sorted(CLASSIFIERS))
def test_the_shipped_file_has_every_label_in_order_with_its_ranks_and_fallback(model):
    names = label_names(model)
    lines = read_linked(shipped_file(model))
    assert [line.name for line in lines] == names  # one line per label, none left out, in order
    in_class, kingdom, ncbi_kingdom = CLASSIFIERS[model]
    counts = {kind: 0 for kind in MATCH_TYPES}
    for line in lines:
        counts[line.matchType] += 1
        taxon = line.taxon
        if line.matchType == "NONE":
            assert taxon is None and line.fallback and line.name in line.fallback, line
            continue
        assert taxon is not None and taxon.source == "ncbi" and taxon.id == taxon.usageKey, line
        assert taxon.matchType == line.matchType
        assert (taxon.fallback is None) == (line.matchType == "EXACT"), line
        if line.matchType == "FALLBACK_SPECIES":
            assert taxon.rank == "SPECIES" and line.name.startswith(f"{taxon.canonicalName} ")
            assert taxon.fallback and "its species" in taxon.fallback
        if line.matchType == "FALLBACK_GENUS":
            assert taxon.canonicalName == line.name.split()[0] and taxon.rank in ("GENUS", "SUBGENUS")
            assert taxon.fallback and "its genus" in taxon.fallback
        if line.matchType == "FALLBACK_SCOPE":  # neither species nor genus: what all the model's share
            assert taxon.rank in ("CLASS", "KINGDOM") and taxon.fallback and "nor is its" in taxon.fallback
        if line.matchType == "EXACT":
            assert taxon.canonicalName == line.name
        if taxon.rank in ("SPECIES", "SUBSPECIES"):
            assert taxon.speciesKey is not None
        assert taxon.kingdom == kingdom, line  # GBIF's name, whatever the source
        assert taxon.ncbiKingdom in (ncbi_kingdom, None), line  # None: red algae, no NCBI kingdom
        if in_class is not None:
            assert taxon.class_ == in_class, line
        assert taxon.species_key is None  # an NCBI taxid is never taken for a GBIF key
        missing = [rank for rank in HIGHER if taxon.at(rank) is None]
        if line.matchType != "FALLBACK_SCOPE":
            assert len(missing) <= 1, (line, missing)  # NCBI may leave one rank out (incertae sedis)
    assert counts["EXACT"] >= EXACT_AT_LEAST[model], counts
    assert counts["NONE"] == 0, counts  # every label has a lineage
    assert counts["FALLBACK_SCOPE"] <= len(names) // 100, counts  # under 1% above their genus
    print(f"{model}: {counts}")


@pytest.mark.parametrize("model", sorted(CLASSIFIERS))
def test_build_taxonomy_regenerates_the_shipped_file_byte_for_byte(model, tmp_path):
    pytest.importorskip("taxoniq", reason="the `taxonomy` extra is not installed")
    from app.services.ncbi_taxonomy import BuildTarget, Ncbi, build

    names = label_names(model)
    report = build(BuildTarget(model, names, tmp_path / f"{model}.ncbi.jsonl"), Ncbi())
    assert report.out.read_bytes() == shipped_file(model).read_bytes(), (
        f"{shipped_file(model)} is not what `python -m app build-taxonomy` writes now: rerun it"
    )
    assert sum(report.counts.values()) == len(names)


# --- joined with link-gbif's file -------------------------------------------------------------

GBIF_ARDEA = {  # what link-gbif writes for an exact match (GBIF's keys)
    "name": "Ardea herodias",
    "matchType": "EXACT",
    "confidence": 99,
    "taxon": {
        "usageKey": 2481029,
        "speciesKey": 2481029,
        "canonicalName": "Ardea herodias",
        "rank": "SPECIES",
        "matchType": "EXACT",
        "kingdom": "Animalia",
        "class": "Aves",
        "family": "Ardeidae",
        "familyKey": 2481009,
        "genus": "Ardea",
        "genusKey": 2481024,
    },
}


def write_lines(path: Path, items: list[dict[str, object]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items), encoding="utf-8")
    return path


def test_link_gbifs_line_wins_over_the_ncbi_line_for_the_same_label(tmp_path):
    offline = write_lines(
        tmp_path / "birds.ncbi.jsonl",
        [
            json.loads(line)
            for line in shipped_file("aiy_birds_v1").read_text(encoding="utf-8").splitlines()
            if json.loads(line)["name"] in ("Ardea herodias", "Ardea alba", "Ardea herodias occidentalis")
        ],
    )
    unmatched = {"name": "Ardea herodias occidentalis", "matchType": "HIGHERRANK", "confidence": 98}
    linked = write_lines(tmp_path / "gbif_taxonomy.jsonl", [GBIF_ARDEA, unmatched])
    book = TaxonomyBook()
    taxonomy = book.get(TaxonomyFiles(linked, offline))

    heron = taxonomy["Ardea herodias"]
    assert (heron.source, heron.usageKey, heron.species_key) == ("gbif", 2481029, 2481029)  # GBIF's
    assert heron.id == 2481029  # filled for link-gbif's lines, which predate the field
    egret = taxonomy["Ardea alba"]  # GBIF never linked it: NCBI's classifies it
    assert egret.source == "ncbi" and egret.family == "Ardeidae" and egret.species_key is None
    subspecies = taxonomy["Ardea herodias occidentalis"]  # GBIF's line has no taxon: NCBI's species
    assert (subspecies.source, subspecies.matchType, subspecies.canonicalName) == (
        "ncbi",
        "FALLBACK_SPECIES",
        "Ardea herodias",
    )
    assert book.get(TaxonomyFiles(linked, offline)) is taxonomy  # unchanged files: the same dict

    # A rerun of link-gbif (a new mtime) is read again without a restart.
    write_lines(linked, [])
    later = time.time() + 5
    os.utime(linked, (later, later))
    assert book.get(TaxonomyFiles(linked, offline))["Ardea herodias"].source == "ncbi"


def test_without_link_gbifs_file_the_offline_file_alone_serves(tmp_path):
    offline = shipped_file("aiy_insects_v1")
    book = TaxonomyBook()
    taxonomy = book.get(TaxonomyFiles(tmp_path / "never_linked.jsonl", offline))
    assert taxonomy["Danaus plexippus"].order == "Lepidoptera"
    assert taxonomy is book.get(offline)  # the one file's dict itself: no copy per model
    assert TaxonomyFiles.of(None, None) is None and TaxonomyFiles.of(offline, None) == offline


def test_a_taxon_says_its_source_and_gbifs_lines_default_to_gbif():
    gbif = LinkedName.model_validate(GBIF_ARDEA).taxon
    assert gbif is not None and gbif.source == "gbif" and gbif.is_gbif and gbif.exact
    ncbi = Taxon.model_validate({"usageKey": 56072, "source": "ncbi", "rank": "SPECIES", "speciesKey": 56072})
    assert ncbi.id == 56072 and not ncbi.is_gbif and ncbi.species_key is None


def test_the_batch_outputs_name_a_rollup_by_its_sources_page():
    from app.batch.outputs.answer_reading import named_taxon

    def answer(source: str | None) -> dict[str, object]:
        rollup = {"rank": "genus", "name": "Papilio", "usageKey": 7145, "score": 0.9, "source": source}
        return {"results": [], "no_match": True, "no_match_reason": "low_confidence", "rollup": rollup}

    ncbi = named_taxon(answer("ncbi"))
    assert (
        ncbi is not None
        and ncbi.taxon_id == "https://www.ncbi.nlm.nih.gov/Taxonomy/Browser/wwwtax.cgi?id=7145"
    )
    gbif = named_taxon(answer(None))  # a rollup without a source (older answers): GBIF's key
    assert gbif is not None and gbif.taxon_id == "https://www.gbif.org/species/7145"


def test_build_taxonomy_declares_a_user_models_file_and_hints_a_shipped_ones(tmp_path):
    pytest.importorskip("taxoniq", reason="the `taxonomy` extra is not installed")
    from app.models.manifest import load_manifests
    from app.services.ncbi_taxonomy import Ncbi, build, targets
    from app.settings import ModelSettings

    (tmp_path / "labels.csv").write_text(
        "id,name\n0,Danaus plexippus\n1,Vanessa gonerilla gonerilla\n2,Chen rossii\n3,background\n"
    )
    entry = (
        'task = "classifier"\nformat = "tflite"\nfile = "x.tflite"\nlabels = "labels.csv"\n'
        "background_index = 3\n"
    )
    shipped = tmp_path / "models.toml"
    shipped.write_text(f'[[models]]\nname = "shipped_v1"\n{entry}')
    (tmp_path / "local.toml").write_text(f'[[models]]\nname = "mine_v1"\n{entry}')
    settings = ModelSettings(manifest=shipped)

    found = {target.model: target for target in targets(settings, None, None)}
    assert found["shipped_v1"].out == tmp_path / "taxonomy" / "shipped_v1.ncbi.jsonl"
    assert found["shipped_v1"].manifest_hint and "offline_taxonomy" in found["shipped_v1"].manifest_hint
    assert found["mine_v1"].names == ["Danaus plexippus", "Vanessa gonerilla gonerilla", "Chen rossii"]
    ncbi = Ncbi()
    report = build(found["mine_v1"], ncbi)
    assert dict(report.counts) == {"exact": 1, "species": 1, "scope": 1} and report.unresolved == [
        "Chen rossii"
    ]
    merged = load_manifests(shipped, tmp_path / "local.toml")
    mine = next(spec for spec in merged.models if spec.name == "mine_v1")
    assert mine.offline_taxonomy == "taxonomy/mine_v1.ncbi.jsonl"  # served after a reload
    taxonomy = TaxonomyBook().get(merged.resolve(mine.offline_taxonomy, mine))
    assert taxonomy["Vanessa gonerilla gonerilla"].fallback == (
        "Vanessa gonerilla gonerilla is not in NCBI Taxonomy: its species Vanessa gonerilla"
    )
    # Declared now: a rerun rewrites the same file in place, saying nothing more.
    again = {target.model: target for target in targets(settings, ["mine_v1"], None)}["mine_v1"]
    assert again.declare is None and again.manifest_hint is None
    assert build(again, ncbi).out.read_bytes() == report.out.read_bytes()
