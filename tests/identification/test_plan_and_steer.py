"""identification.plan, .species_lists and .steer, and the decision they feed, called directly on
a small taxonomy in GBIF's shape (what link-gbif writes): species lists as users write them, taxa
resolved at any rank, what the filters keep and how they renormalise, the geo filter's nearest
recorded ancestor, and the refusals (400, 404, 409, 413) with their reasons."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from app.core import Label
from app.enrich.taxonomies import TaxonomyBook
from app.enrich.taxonomy import LinkedName, Rollup, Taxon
from app.errors import BadRequest, PayloadTooLarge, SpeciesListNotFound, TaxonomyMissing, UnknownTaxon
from app.identification.decide import Decision, ModelVerdict, below_filter, decide, verdict
from app.identification.plan import Plan, plan_for, resolve_taxon
from app.identification.request import Place, Steering
from app.identification.species_lists import SpeciesLists, parse_species_list
from app.identification.steer import GeoOutcome, narrow, recorded_ancestor, steer, steer_now
from app.models.loaded import LoadedModel
from app.models.manifest import ModelSpec
from app.models.scope import ModelScope
from app.settings import RankingSettings
from tests.support.server import REPO
from tests.support.shared import HAS_SHARED, MODELS

# genus -> (family, order, class); keys are made up, one per name, as GBIF's are one per taxon
LINEAGE = {
    "Vanessa": ("Nymphalidae", "Lepidoptera", "Insecta"),
    "Danaus": ("Nymphalidae", "Lepidoptera", "Insecta"),
    "Papilio": ("Papilionidae", "Lepidoptera", "Insecta"),
    "Libellula": ("Libellulidae", "Odonata", "Insecta"),
}
NAMES = [
    "Vanessa atalanta",
    "Vanessa cardui",
    "Danaus plexippus",
    "Papilio machaon",
    "Libellula depressa",
    "Vanessa gonerilla gonerilla",  # unlinked, as GBIF leaves the AIY subspecies
    "background",
]
BACKGROUND = len(NAMES) - 1
KEYS: dict[str, int] = {}


def key(name: str) -> int:
    return KEYS.setdefault(name, 1000 + len(KEYS))


def taxon(name: str) -> Taxon:
    genus = name.split()[0]
    family, order, klass = LINEAGE[genus]
    return Taxon.model_validate(
        {
            "usageKey": key(name), "canonicalName": name, "rank": "SPECIES", "status": "ACCEPTED",
            "matchType": "EXACT", "kingdom": "Animalia", "kingdomKey": 1, "phylum": "Arthropoda",
            "phylumKey": 54, "class": klass, "classKey": key(klass), "order": order, "orderKey": key(order),
            "family": family, "familyKey": key(family), "genus": genus, "genusKey": key(genus),
            "speciesKey": key(name),
        }
    )  # fmt: skip


TAXONOMY = {name: taxon(name) for name in NAMES[:5]}


@pytest.fixture
def book(tmp_path: Path) -> tuple[TaxonomyBook, Path]:
    path = tmp_path / "gbif_taxonomy.jsonl"
    lines = [
        LinkedName(name=n, matchType="EXACT", taxon=t).model_dump_json(by_alias=True)
        for n, t in TAXONOMY.items()
    ]
    path.write_text("\n".join(lines) + "\n")
    return TaxonomyBook(), path


def model(taxonomy_path: Path | None, name: str = "tiny_v1") -> LoadedModel:
    spec = ModelSpec(
        name=name,
        task="classifier",
        format="tflite",
        file="x.tflite",
        labels="x.txt",
        background_index=BACKGROUND,
    )
    return LoadedModel(
        spec=spec,
        state="ready",
        labels=[Label(scientific_name=n) for n in NAMES],
        taxonomy_path=taxonomy_path,
        scope=ModelScope(None, None, background_index=BACKGROUND),  # uncalibrated
    )


def classic(p: np.ndarray, plan: Plan, top_k: int = 5) -> tuple[Decision, ModelVerdict, np.ndarray]:
    """A classifier endpoint's decision on one photo's output (the model's own probabilities, no
    place): ``verdict`` with kind "model", the plan's filters, ``decide``; with the scores of the
    listed species."""
    (tiny,) = plan.models
    assert tiny.scope is not None
    found = verdict(tiny, [tiny.scope.assess(p, None)], plan.min_score, "model")
    steered = steer_now(found.probabilities, tiny, plan)
    decision = decide(found, [found], plan, TAXONOMY, top_k, steered, "model")
    return decision, found, steered.scores[decision.species]


# --- species lists ---------------------------------------------------------------------------


def test_a_text_list_reads_names_comments_and_birdnet_lines():
    text = (
        "# my garden\n"
        "Vanessa atalanta\n"
        "  vanessa   CARDUI   # the same spelling twice, in another case\n"
        "Vanessa cardui\n"
        "\n"
        "Danaus plexippus_Monarch\n"  # BirdNET's Sci_Common
    )
    listed = parse_species_list(text.encode(), "garden.txt", "upload")
    assert listed.names == ("Vanessa atalanta", "vanessa CARDUI", "Danaus plexippus")
    assert set(listed.keys) == {"vanessa atalanta", "vanessa cardui", "danaus plexippus"}


def test_a_csv_list_reads_its_name_column():
    csv = 'common_name,scientific_name\nRed admiral,Vanessa atalanta\n"Monarch, the",Danaus plexippus\n'
    assert parse_species_list(csv.encode(), "mine.csv", "upload").names == (
        "Vanessa atalanta",
        "Danaus plexippus",
    )
    labelmap = "id,name\n0,Vanessa atalanta\n1,Papilio machaon\n"  # a model's own labelmap.csv
    assert parse_species_list(labelmap.encode(), "labelmap.csv", "upload").names == (
        "Vanessa atalanta",
        "Papilio machaon",
    )
    single = "Vanessa atalanta\nPapilio machaon\n"
    assert parse_species_list(single.encode(), "one.csv", "upload").names == (
        "Vanessa atalanta",
        "Papilio machaon",
    )


@pytest.mark.parametrize(
    ("data", "name", "words"),
    [
        (b"a,b\n1,Vanessa atalanta\n", "x.csv", "header"),
        (b"# only a comment\n\n", "x.txt", "no names"),
        (b"\xff\xfe\x00V", "x.txt", "UTF-8"),
    ],
    ids=["csv-without-name-column", "empty", "not-utf8"],
)
def test_an_unusable_list_is_refused_saying_why(data: bytes, name: str, words: str):
    with pytest.raises(BadRequest) as raised:
        parse_species_list(data, name, "upload")
    assert words in raised.value.message and raised.value.status == 400


def test_installed_lists_by_name_and_their_refusals(tmp_path: Path):
    (tmp_path / "garden.txt").write_text("Vanessa atalanta\n")
    (tmp_path / "big.txt").write_text("Vanessa atalanta\n" * 100)
    (tmp_path / "README.md").write_text("not a list")
    lists = SpeciesLists(tmp_path, max_bytes=1000)
    assert lists.load("garden").names == ("Vanessa atalanta",)
    assert lists.load("garden.txt").source == "installed"
    assert lists.available() == ["big", "garden"]
    with pytest.raises(SpeciesListNotFound) as missing:
        lists.load("nowhere")
    assert missing.value.status == 404 and missing.value.detail["available"] == ["big", "garden"]
    assert "garden" in missing.value.message
    with pytest.raises(PayloadTooLarge) as big:
        lists.load("big")
    assert big.value.status == 413 and "LISTS_MAX_BYTES" in big.value.message
    with pytest.raises(PayloadTooLarge):
        lists.upload(b"x" * 1001, "upload.txt")
    for bad in ("../garden", "a/b", ".hidden"):
        with pytest.raises(BadRequest):
            lists.load(bad)


@pytest.mark.skipif(not HAS_SHARED, reason="the insects label map is in ../shared")
def test_the_shipped_example_list_names_only_species_the_insects_model_has():
    listed = SpeciesLists(REPO / "volumes" / "lists", 512 * 1024).load("leeds_butterflies")
    labels = {
        line.split(",", 1)[1].casefold()
        for line in (MODELS / "aiy_insects_v1" / "labelmap.csv").read_text().splitlines()[1:]
    }
    assert len(listed.names) == 10 and set(listed.keys) <= labels


# --- taxa ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("Lepidoptera", ("Lepidoptera", "order")),
        ("insecta", ("Insecta", "class")),
        ("VANESSA", ("Vanessa", "genus")),
        ("Nymphalidae", ("Nymphalidae", "family")),
        ("danaus plexippus", ("Danaus plexippus", "species")),
        ("Animalia", ("Animalia", "kingdom")),
    ],
)
def test_a_taxon_name_resolves_case_insensitively_at_any_rank(query: str, expected: tuple[str, str]):
    found = resolve_taxon(query, {"tiny_v1": TAXONOMY})
    assert (found.name, found.rank) == expected
    assert found.key == (1 if expected[0] == "Animalia" else key(expected[0]))


def test_a_numeric_taxon_is_a_gbif_key():
    assert resolve_taxon(str(key("Papilionidae")), {"tiny_v1": TAXONOMY}).name == "Papilionidae"
    assert resolve_taxon(str(key("Vanessa cardui")), {"tiny_v1": TAXONOMY}).rank == "species"


def test_an_unknown_taxon_is_400_and_one_without_a_taxonomy_409():
    with pytest.raises(UnknownTaxon) as unknown:
        resolve_taxon("Coleoptera", {"tiny_v1": TAXONOMY})
    assert unknown.value.status == 400 and unknown.value.code == "unknown_taxon"
    with pytest.raises(TaxonomyMissing) as none:
        resolve_taxon("Lepidoptera", {"tiny_v1": {}})
    assert none.value.status == 409 and "link-gbif --model tiny_v1" in none.value.message
    # Not in the linked one, and another has nothing to look in: that one may have it.
    with pytest.raises(TaxonomyMissing) as elsewhere:
        resolve_taxon("Aves", {"tiny_v1": TAXONOMY, "birds_v1": {}})
    assert "birds_v1" in elsewhere.value.message and elsewhere.value.detail["unlinked"] == ["birds_v1"]


def test_the_plan_keeps_the_species_under_the_taxon_and_the_unlinked_by_their_genus(book):
    taxonomies, path = book
    ranking = RankingSettings()
    vanessa = plan_for([model(path)], taxonomies, Steering(taxon="Vanessa"), ranking)
    kept = [NAMES[i] for i in np.flatnonzero(vanessa.keep["tiny_v1"])]
    assert kept == ["Vanessa atalanta", "Vanessa cardui", "Vanessa gonerilla gonerilla"]
    order = plan_for([model(path)], taxonomies, Steering(taxon="lepidoptera"), ranking)
    assert [NAMES[i] for i in np.flatnonzero(order.keep["tiny_v1"])] == NAMES[
        :4
    ]  # the unlinked one: no order
    assert (order.min_score, order.rollup_threshold) == (ranking.min_score, ranking.rollup_threshold)
    own = plan_for([model(path)], taxonomies, Steering(min_score=0.5, rollup_threshold=0.6), ranking)
    assert (own.min_score, own.rollup_threshold, own.keep) == (0.5, 0.6, {})


def test_the_plan_reports_unmatched_names_and_excludes_models_with_none_kept(book):
    taxonomies, path = book
    listed = parse_species_list(b"Vanessa cardui\nLibellula depressa\nNotus inventus\n", "l.txt", "upload")
    other = model(path, "other_v1")
    plan = plan_for(
        [model(path), other], taxonomies, Steering(taxon="Odonata", species_list=listed), RankingSettings()
    )
    assert [NAMES[i] for i in np.flatnonzero(plan.keep["tiny_v1"])] == ["Libellula depressa"]
    assert plan.unmatched == ("Notus inventus",)  # Vanessa cardui is a label, outside the taxon
    unlinked = model(None, "unlinked_v1")
    with_unlinked = plan_for(
        [model(path), unlinked], taxonomies, Steering(taxon="Odonata"), RankingSettings()
    )
    assert [m.name for m in with_unlinked.models] == ["tiny_v1"]
    assert "link-gbif --model unlinked_v1" in with_unlinked.excluded["unlinked_v1"]
    nothing = parse_species_list(b"Notus inventus\n", "l.txt", "upload")
    with pytest.raises(BadRequest) as none_kept:
        plan_for([model(path)], taxonomies, Steering(species_list=nothing), RankingSettings())
    assert none_kept.value.detail["unmatched"] == ["Notus inventus"]
    with pytest.raises(TaxonomyMissing):
        plan_for([unlinked], taxonomies, Steering(taxon="Odonata", species_list=listed), RankingSettings())


def test_steering_bounds_its_thresholds():
    for bad in (
        {"min_score": 1.5},
        {"min_score": -0.1},
        {"rollup_threshold": 0.0},
        {"rollup_threshold": 2.0},
    ):
        with pytest.raises(BadRequest):
            Steering(**bad)  # type: ignore[arg-type]


# --- renormalising, ranking, the geo filter's ancestor ---------------------------------------


def test_the_kept_species_are_renormalised_to_sum_to_one_and_the_mass_is_reported():
    p = np.array([0.05, 0.15, 0.6, 0.1, 0.02, 0.0, 0.08], np.float32)
    keep = np.array([True, True, False, False, False, True, False])
    narrowed, mass = narrow(p, keep)
    assert mass == pytest.approx(0.2)
    np.testing.assert_allclose(narrowed, [0.25, 0.75, 0, 0, 0, 0, 0], atol=1e-6)


def test_a_filtered_answer_lists_only_the_kept_and_leaves_the_background_to_the_model(book):
    taxonomies, path = book
    tiny = model(path)
    vanessa = plan_for([tiny], taxonomies, Steering(taxon="Vanessa"), RankingSettings(min_score=0.1))
    keep = np.array([True, True, False, False, False, True, False])  # the unlinked subspecies too
    np.testing.assert_array_equal(vanessa.keep["tiny_v1"], keep)
    p = np.array([0.05, 0.15, 0.6, 0.1, 0.02, 0.0, 0.08], np.float32)
    decision, found, scores = classic(p, vanessa)
    assert decision.species == [1, 0] and scores == pytest.approx([0.75, 0.25])  # 5: no probability
    assert decision.no_match_reason is None and found.background == pytest.approx(0.08)
    # A background over the model's best species is its call, whatever the filter keeps.
    nothing = np.array([0.01, 0.02, 0.05, 0.0, 0.0, 0.0, 0.92], np.float32)
    assert classic(nothing, vanessa)[0].no_match_reason == "not_an_organism"
    zero = np.array([0.0, 0.0, 0.9, 0.1, 0.0, 0.0, 0.0], np.float32)
    empty = classic(zero, vanessa)[0]
    assert empty.species == [] and empty.no_match_reason == "filtered_out"
    # Kept species holding some probability, less than min_score together: guesses, said so.
    faint = np.array([0.03, 0.02, 0.85, 0.1, 0.0, 0.0, 0.0], np.float32)
    guessed, _, guessed_scores = classic(faint, vanessa)
    assert guessed.species == [0, 1] and guessed_scores[0] == pytest.approx(0.6)
    assert guessed.no_match_reason == "filtered_out"
    unfiltered = plan_for([tiny], taxonomies, Steering(), RankingSettings(min_score=0.1))
    plain = classic(p, unfiltered, top_k=3)[0]
    assert plain.species == [2, 1, 3] and plain.no_match_reason is None  # unsteered: as it always was


def test_a_removed_best_species_rolls_up_to_its_nearest_ancestor_with_records():
    labels = [Label(scientific_name=n) for n in NAMES]
    vision = np.array([0.7, 0.05, 0.1, 0.1, 0.03, 0.02, 0.0], np.float32)
    candidates = np.array([True] * 6 + [False])
    # Vanessa cardui recorded: the genus of the best (Vanessa atalanta) is allowed.
    genus = recorded_ancestor(vision, candidates, np.array([False, True, False, False, False, False, False]),
                              labels, TAXONOMY)  # fmt: skip
    assert genus is not None and (genus.rank, genus.name, genus.usageKey) == (
        "genus",
        "Vanessa",
        key("Vanessa"),
    )
    assert genus.score == pytest.approx(0.75) and "Vanessa atalanta" in (genus.reason or "")
    # Only the monarch recorded: no Vanessa, but the family Nymphalidae.
    family = recorded_ancestor(vision, candidates, np.array([False, False, True, False, False, False, False]),
                               labels, TAXONOMY)  # fmt: skip
    assert family is not None and (family.rank, family.name) == ("family", "Nymphalidae")
    assert family.score == pytest.approx(0.85)
    # Only a dragonfly: up to the class Insecta.
    klass = recorded_ancestor(vision, candidates, np.array([False, False, False, False, True, False, False]),
                              labels, TAXONOMY)  # fmt: skip
    assert klass is not None and (klass.rank, klass.name) == ("class", "Insecta")
    # The best species recorded itself: no rollup.
    assert recorded_ancestor(vision, candidates, candidates, labels, TAXONOMY) is None


def test_a_rollup_to_the_filters_own_taxon_or_above_is_not_reported():
    vanessa = resolve_taxon("Vanessa", {"tiny_v1": TAXONOMY})
    cardui = resolve_taxon("Vanessa cardui", {"tiny_v1": TAXONOMY})
    family = resolve_taxon("Nymphalidae", {"tiny_v1": TAXONOMY})
    genus = Rollup(rank="genus", name="Vanessa", usageKey=key("Vanessa"), score=0.9)
    assert below_filter(genus, None) is genus and below_filter(genus, family) is genus
    assert below_filter(genus, vanessa) is None and below_filter(genus, cardui) is None
    recorded = genus.model_copy(update={"reason": "geo=filter: ..."})
    assert below_filter(recorded, vanessa) is recorded  # the geo filter's ancestor says something


class _Filtering:
    """A GeoWeighting that answers geo=filter with given records, as the real one does from GBIF."""

    def __init__(self, recorded: list[bool]) -> None:
        self.recorded = np.array(recorded)

    async def apply(
        self, probabilities, labels, taxonomy, lat, lon, month, background_index=None, mode="prior"
    ):
        kept = self.recorded.copy()
        weighted = np.where(kept, probabilities, 0.0).astype(np.float32)
        weighted[kept] *= float(probabilities[:BACKGROUND].sum()) / float(weighted[kept].sum())
        weighted[BACKGROUND] = probabilities[BACKGROUND]
        outcome = GeoOutcome("applied", records=kept.astype(np.int64) * 7, mode=mode, recorded=kept)
        return weighted, outcome


def test_steer_filters_then_places_and_names_the_ancestor(book):
    taxonomies, path = book
    tiny = model(path)
    plan = plan_for([tiny], taxonomies, Steering(taxon="Lepidoptera", geo="filter"), RankingSettings())
    p = np.array([0.5, 0.1, 0.05, 0.05, 0.2, 0.0, 0.1], np.float32)
    recorded = [False, True, True, False, True, False, False]
    steered = asyncio.run(steer(p, tiny, TAXONOMY, plan, _Filtering(recorded), Place(50.0, 0.0)))  # type: ignore[arg-type]
    assert steered.kept_mass == pytest.approx(0.7)  # the four Lepidoptera
    np.testing.assert_allclose(steered.vision[:4], np.array([0.5, 0.1, 0.05, 0.05]) / 0.7, rtol=1e-6)
    assert steered.keep is not None
    assert [NAMES[i] for i in np.flatnonzero(steered.keep)] == ["Vanessa cardui", "Danaus plexippus"]
    assert steered.scores[[1, 2]].sum() == pytest.approx(1.0, rel=1e-6)  # the dragonfly: outside the taxon
    assert steered.rollup is not None and steered.rollup.name == "Vanessa"
    off = plan_for([tiny], taxonomies, Steering(taxon="Lepidoptera", geo="off"), RankingSettings())
    ignored = asyncio.run(steer(p, tiny, TAXONOMY, off, _Filtering(recorded), Place(50.0, 0.0)))  # type: ignore[arg-type]
    assert ignored.geo.status == "off" and ignored.rollup is None
    np.testing.assert_array_equal(ignored.scores, ignored.vision)
