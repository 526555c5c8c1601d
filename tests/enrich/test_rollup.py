"""The common-ancestor rollup on its own."""

from __future__ import annotations

from app.enrich.taxonomy import Taxon, linked_from_match, rollup

GENUS_KEYS = {"Vanessa": 11, "Danaus": 21, "Pieris": 31}


def taxon(genus: str, family: str, key: int) -> Taxon:
    return Taxon.model_validate(
        {
            "usageKey": key,
            "genus": genus,
            "genusKey": GENUS_KEYS[genus],
            "family": family,
            "familyKey": 7 if family == "Nymphalidae" else 8,
            "order": "Lepidoptera",
        }
    )


TAXA = {
    "Vanessa atalanta": taxon("Vanessa", "Nymphalidae", 110),
    "Vanessa cardui": taxon("Vanessa", "Nymphalidae", 120),
    "Danaus plexippus": taxon("Danaus", "Nymphalidae", 210),
    "Pieris rapae": taxon("Pieris", "Pieridae", 310),
}


def test_no_rollup_when_a_species_is_confident_or_nothing_is_linked():
    assert rollup([("Vanessa atalanta", 0.9), ("Vanessa cardui", 0.05)], TAXA, 0.8) is None
    assert rollup([("Vanessa atalanta", 0.5), ("Vanessa cardui", 0.45)], {}, 0.8) is None


def test_the_deepest_taxon_that_reaches_the_threshold_wins():
    split = [("Vanessa atalanta", 0.48), ("Vanessa cardui", 0.45), ("Pieris rapae", 0.07)]
    result = rollup(split, TAXA, 0.8)
    assert result is not None and (result.rank, result.name, result.usageKey) == ("genus", "Vanessa", 11)
    assert abs(result.score - 0.93) < 1e-9

    spread = [("Vanessa atalanta", 0.35), ("Danaus plexippus", 0.5), ("Pieris rapae", 0.15)]
    family = rollup(spread, TAXA, 0.8)  # no genus reaches 0.8; Nymphalidae does (0.85)
    assert family is not None and (family.rank, family.name) == ("family", "Nymphalidae")
    order = rollup(spread, TAXA, 0.95)
    assert order is not None and (order.rank, order.name, order.score) == ("order", "Lepidoptera", 1.0)
    assert rollup([("Unlinked species", 0.5)], TAXA, 0.8) is None


def test_only_exact_matches_are_linked():
    assert (
        linked_from_match("Aus bus", {"matchType": "EXACT", "usageKey": 5, "genus": "Aus"}).taxon is not None
    )
    fuzzy = linked_from_match(
        "Aus bsu", {"matchType": "FUZZY", "usageKey": 5, "scientificName": "Aus bus L."}
    )
    assert fuzzy.taxon is None and fuzzy.suggestion == "Aus bus L."
    assert linked_from_match("x", {"confidence": 100, "matchType": "NONE", "synonym": False}).taxon is None
