"""Taxon filters and rollups on the shipped offline taxonomy (NCBI Taxonomy, tracked, no network):
kingdoms by either taxonomy's name, NCBI taxids as keys, the label's own name where NCBI took its
species or genus, and label maps linked partly by GBIF (link-gbif) and partly by NCBI."""

from __future__ import annotations

import pytest

from app.core import Label
from app.enrich.taxonomies import Taxonomy, TaxonomyBook
from app.enrich.taxonomy import Taxon, read_linked, rollup, same_place
from app.errors import BadRequest
from app.identification.plan import is_under, kept_classes, resolve_taxon
from app.identification.species_lists import parse_species_list
from app.models.loaded import LoadedModel
from app.models.manifest import ModelSpec, load_manifest
from tests.support.manifests import SHIPPED_MANIFEST

MANIFEST = load_manifest(SHIPPED_MANIFEST)
SPECS = {spec.name: spec for spec in MANIFEST.models}


def offline(model: str) -> Taxonomy:
    spec = SPECS[model]
    assert spec.offline_taxonomy is not None
    return TaxonomyBook().get(MANIFEST.resolve(spec.offline_taxonomy, spec))


def label_names(model: str) -> list[str]:
    """The model's labels, in order: the shipped file has one line per label."""
    spec = SPECS[model]
    assert spec.offline_taxonomy is not None
    return [line.name for line in read_linked(MANIFEST.resolve(spec.offline_taxonomy, spec))]


def classifier(names: list[str]) -> LoadedModel:
    spec = ModelSpec(name="m", task="classifier", format="tflite", file="x.tflite", labels="x.csv")
    return LoadedModel(spec=spec, state="ready", labels=[Label(scientific_name=n) for n in names])


INSECTS = offline("aiy_insects_v1")
BIRDS = offline("aiy_birds_v1")
PLANTS = offline("aiy_plants_v1")

# What link-gbif writes for the monarch (GBIF's backbone keys).
GBIF_MONARCH = Taxon.model_validate(
    {
        "usageKey": 5133088, "speciesKey": 5133088, "canonicalName": "Danaus plexippus", "rank": "SPECIES",
        "matchType": "EXACT", "kingdom": "Animalia", "kingdomKey": 1, "phylum": "Arthropoda",
        "phylumKey": 54, "class": "Insecta", "classKey": 216, "order": "Lepidoptera", "orderKey": 797,
        "family": "Nymphalidae", "familyKey": 7017, "genus": "Danaus", "genusKey": 5133083,
    }
)  # fmt: skip


def test_a_kingdom_resolves_by_either_taxonomys_name_and_shows_gbifs():
    animals = resolve_taxon("Metazoa", {"insects": INSECTS})
    assert (animals.rank, animals.name, animals.source, animals.key) == ("kingdom", "Animalia", "ncbi", 33208)
    assert resolve_taxon("animalia", {"insects": INSECTS}) == animals
    plants = resolve_taxon("Viridiplantae", {"plants": PLANTS})
    assert (plants.rank, plants.name) == ("kingdom", "Plantae")
    assert resolve_taxon("Plantae", {"plants": PLANTS}) == plants
    names = label_names("aiy_insects_v1")
    mask, _ = kept_classes(classifier(names), INSECTS, animals, None)
    linked = [name in INSECTS for name in names]
    assert mask.tolist() == linked  # every insect NCBI classifies, none NCBI does not


def test_a_name_or_an_ncbi_taxid_of_any_rank_filters_on_the_offline_taxonomy():
    moths = resolve_taxon("Lepidoptera", {"insects": INSECTS})
    assert (moths.rank, moths.source, moths.key) == ("order", "ncbi", 7088)
    assert resolve_taxon("7088", {"insects": INSECTS}) == moths  # the key of the taxonomy in use
    names = label_names("aiy_insects_v1")
    mask, _ = kept_classes(classifier(names), INSECTS, moths, None)
    kept = {name for name, keep in zip(names, mask, strict=True) if keep}
    assert "Danaus plexippus" in kept and "Apis mellifera" not in kept and len(kept) > 400
    assert all(INSECTS[name].order == "Lepidoptera" for name in kept)
    # A label NCBI lacks, classified by its genus: the label's own name still names it alone.
    serin = resolve_taxon("Serinus mozambicus", {"birds": BIRDS})
    assert (serin.key, serin.name) == (None, "Serinus mozambicus")
    birds = label_names("aiy_birds_v1")
    mask, _ = kept_classes(classifier(birds), BIRDS, serin, None)
    assert [name for name, keep in zip(birds, mask, strict=True) if keep] == ["Serinus mozambicus"]


def test_a_species_list_does_not_take_a_fallbacks_species_for_the_label():
    names = label_names("aiy_birds_v1")
    listed = parse_species_list(b"Ardea herodias\n", "herons", "upload")
    mask, matched = kept_classes(classifier(names), BIRDS, None, listed)
    # "Ardea herodias occidentalis" is classified by its species, but the list names the species
    assert [name for name, keep in zip(names, mask, strict=True) if keep] == ["Ardea herodias"]
    assert matched == {"ardea herodias"}


def test_a_label_map_linked_partly_by_gbif_filters_and_rolls_up_as_one_taxonomy():
    mixed = {**INSECTS, "Danaus plexippus": GBIF_MONARCH}  # link-gbif's line wins for the monarch
    family = resolve_taxon("Nymphalidae", {"insects": mixed})  # named by both: one taxon, GBIF's
    assert (family.rank, family.source, family.key) == ("family", "gbif", 7017)
    assert is_under("Danaus plexippus", mixed["Danaus plexippus"], family)
    assert is_under("Danaus gilippus", mixed["Danaus gilippus"], family)  # NCBI's, by name
    assert not is_under("Papilio glaucus", mixed["Papilio glaucus"], family)
    order = resolve_taxon("Lepidoptera", {"insects": mixed})
    assert order.source == "gbif" and order.key == 797
    assert is_under("Vanessa cardui", mixed["Vanessa cardui"], order)
    # Either taxonomy's key finds it; the NCBI key keeps the GBIF-linked monarch by name.
    by_ncbi = resolve_taxon("7088", {"insects": mixed})
    assert by_ncbi.source == "ncbi" and is_under("Danaus plexippus", GBIF_MONARCH, by_ncbi)

    # The rollup sums the genus over both sources; the key is the source's holding most of it.
    found = rollup(
        [("Danaus plexippus", 0.45), ("Danaus gilippus", 0.4), ("Vanessa cardui", 0.15)], mixed, 0.8
    )
    assert found is not None and (found.rank, found.name) == ("genus", "Danaus")
    assert (found.source, found.usageKey) == ("gbif", 5133083) and found.score == pytest.approx(0.85)
    assert same_place(GBIF_MONARCH, mixed["Danaus gilippus"], "genus")
    assert not same_place(GBIF_MONARCH, mixed["Papilio glaucus"], "family")


def test_a_homonym_across_kingdoms_stays_two_taxa():
    plant = Taxon.model_validate(
        {"usageKey": 37577, "source": "ncbi", "canonicalName": "Morus", "rank": "GENUS", "genus": "Morus",
         "genusKey": 37577, "kingdom": "Plantae", "matchType": "FALLBACK_GENUS"}
    )  # fmt: skip
    bird = Taxon.model_validate(
        {"usageKey": 2480968, "canonicalName": "Morus bassanus", "rank": "SPECIES", "genus": "Morus",
         "genusKey": 2480967, "kingdom": "Animalia", "matchType": "EXACT"}
    )  # fmt: skip
    with pytest.raises(BadRequest) as refused:
        resolve_taxon("Morus", {"plants": {"Morus alba": plant}, "birds": {"Morus bassanus": bird}})
    assert {(c["source"], c["key"]) for c in refused.value.detail["candidates"]} == {
        ("ncbi", 37577),
        ("gbif", 2480967),
    }


def test_the_offline_rollup_climbs_ncbis_lineage():
    # The insects model's swallowtail pair: NCBI files Heraclides as a subgenus of Papilio.
    pair = [("Heraclides rumiko", 0.5), ("Heraclides cresphontes", 0.4), ("Papilio glaucus", 0.1)]
    genus = rollup(pair, INSECTS, 0.7)
    assert genus is not None and (genus.rank, genus.name, genus.source) == ("genus", "Papilio", "ncbi")
    assert genus.usageKey == INSECTS["Papilio glaucus"].genusKey
    birds = rollup([("Ardea herodias", 0.5), ("Ardea alba", 0.3), ("Egretta thula", 0.2)], BIRDS, 0.9)
    assert birds is not None and (birds.rank, birds.name) == ("family", "Ardeidae")
