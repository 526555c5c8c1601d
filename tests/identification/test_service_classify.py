"""identification.service as the classifier endpoints ask it (one photo, one named model, its own
probabilities: ``classify``): ranked species, no-match reasons, taxonomy and rollup, timings and
the observer; photos on disk in bulk (identify_files); crafted probabilities (``interpret``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.errors import UnsupportedMediaType
from app.identification.decide import top_k_species
from app.imaging.photo import Photo
from app.models.inference import infer_now
from app.models.registry import open_registry
from app.settings import AdmissionSettings, ModelSettings, RankingSettings
from tests.identification.helpers import Recorder, grey_png, noise_png
from tests.services.helpers import (
    MAX_PIXELS,
    TOY_BACKGROUND,
    TOY_CLASSES,
    classify,
    crafted_model,
    interpret,
    make_identifier,
    probabilities,
    toy_entry,
)
from tests.support.images import encode, photo
from tests.support.manifests import write_manifest
from tests.support.reference import TFLiteReference, savedmodel_probabilities
from tests.support.shared import MODELS, SHARED

CHICKADEE = SHARED / "samples" / "Poecile_atricapillus_01.bmp"
MACAW = SHARED / "samples" / "Ara_macao_01.jpg"


def file_photo(path: Path, fetch_ms: float | None = None) -> Photo:
    return Photo(path.read_bytes(), "file", fetch_ms=fetch_ms, name=path.name)


# --- the real models -----------------------------------------------------------------------


@pytest.mark.shared
def test_the_chickadee_is_ranked_as_the_model_itself_ranks_it(runner, real_registry):
    birds = real_registry.get_ready("aiy_birds_v1")
    data = CHICKADEE.read_bytes()
    identifier = make_identifier(runner, registry=real_registry)
    found = classify(identifier, "aiy_birds_v1", file_photo(CHICKADEE), top_k=5)

    output = infer_now(birds, data, MAX_PIXELS).output
    indices, scores = top_k_species(output, 5, background_index=964)
    assert [hit.index for hit in found.species] == indices
    assert [hit.score for hit in found.species] == scores
    assert [hit.rank for hit in found.species] == [1, 2, 3, 4, 5]
    assert found.chosen.background == float(output[964])
    assert found.no_match_reason is None and not found.no_match
    assert found.scores == "model" and found.model is found.chosen and found.index is None

    top = found.species[0]
    assert top.index == 659 and top.label == birds.labels[659]
    assert top.label.scientific_name == "Poecile atricapillus"
    assert top.label.common_name == "Black-capped Chickadee"
    assert top.score == pytest.approx(0.71875)  # q/256, as the model says it
    assert top.taxon is None and found.rollup is None  # no taxonomy file for this manifest
    # The publisher's preprocessing agrees on the answer.
    publisher = TFLiteReference(MODELS / "aiy_birds_v1" / "model.tflite")
    assert int(np.argmax(publisher.probabilities(CHICKADEE))) == 659


@pytest.mark.shared
def test_the_background_class_is_never_a_species(runner, real_registry):
    identifier = make_identifier(runner, registry=real_registry)
    grey = classify(identifier, "aiy_insects_v1", Photo(grey_png(), "upload"), top_k=100)
    # measured: background 0.094 beats every species (the classic presenter says "background")
    assert grey.no_match_reason == "not_an_organism"
    assert len(grey.species) == 100 and 1021 not in [hit.index for hit in grey.species]
    background = grey.chosen.background
    assert background is not None and background > grey.species[0].score

    everything = classify(identifier, "aiy_birds_v1", file_photo(CHICKADEE), top_k=100)
    assert 964 not in [hit.index for hit in everything.species] and len(everything.species) == 100


@pytest.mark.shared
@pytest.mark.parametrize(
    ("model", "picture", "reason"),
    [
        ("aiy_birds_v1", "grey", "low_confidence"),  # best species 0.059 < MIN_SCORE 0.1
        ("aiy_birds_v1", "noise", "low_confidence"),  # 0.098
        ("aiy_insects_v1", "grey", "not_an_organism"),  # the classic presenter: "background"
    ],
)
def test_a_photo_of_nothing_is_no_match_with_its_reason(runner, real_registry, model, picture, reason):
    data = grey_png() if picture == "grey" else noise_png()
    found = classify(make_identifier(runner, registry=real_registry), model, Photo(data, "upload"))
    assert found.no_match and found.no_match_reason == reason
    assert len(found.species) == 5  # the best guesses are still listed
    assert found.species[0].score < 0.1


@pytest.mark.shared
def test_identify_fills_photo_image_and_timings_and_interpret_does_not(runner, real_registry):
    birds = real_registry.get_ready("aiy_birds_v1")
    identifier = make_identifier(runner, registry=real_registry)
    sent = file_photo(CHICKADEE)
    found = classify(identifier, "aiy_birds_v1", sent)
    width, height = Image.open(CHICKADEE).size
    ((photo_sent, image),) = found.photos
    assert photo_sent is sent
    assert (image.format, image.width, image.height) == ("BMP", width, height)
    assert image.pixels.shape == (224, 224, 3)
    t = found.timings
    assert t is not None and t.fetch_ms is None and t.search_ms is None
    assert t.decode_ms > 0 and t.infer_ms > 0 and t.total_ms >= t.decode_ms + t.infer_ms

    fetched = classify(identifier, "aiy_birds_v1", file_photo(CHICKADEE, fetch_ms=40.0))
    assert fetched.timings is not None and fetched.timings.fetch_ms == 40.0
    assert fetched.timings.total_ms >= 40.0 + fetched.timings.decode_ms + fetched.timings.infer_ms

    interpreted = interpret(identifier, birds, infer_now(birds, sent.data, MAX_PIXELS).output)
    assert interpreted.photos == [] and interpreted.timings is None
    assert [h.index for h in interpreted.species] == [h.index for h in found.species]


@pytest.mark.shared
def test_the_observer_hears_each_inference_and_only_real_fetches(runner, real_registry):
    recorder = Recorder()
    identifier = make_identifier(runner, registry=real_registry, observer=recorder)
    uploaded = classify(identifier, "aiy_birds_v1", file_photo(CHICKADEE))
    fetched_photo = file_photo(MACAW, fetch_ms=25.0)
    fetched = classify(identifier, "aiy_birds_v1", fetched_photo)

    assert [list(infer_ms) for _, infer_ms in recorder.photos] == [["aiy_birds_v1"], ["aiy_birds_v1"]]
    for (decode_ms, infer_ms), result in zip(recorder.photos, [uploaded, fetched], strict=True):
        assert result.timings is not None
        assert (decode_ms, infer_ms["aiy_birds_v1"]) == (result.timings.decode_ms, result.timings.infer_ms)
    assert recorder.fetches == [(25.0, len(fetched_photo.data))]


@pytest.mark.shared
def test_identify_files_lists_unreadable_photos_and_identifies_the_rest(runner, real_registry, tmp_path):
    birds = real_registry.get_ready("aiy_birds_v1")
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"this is not a photo at all" * 10)
    absent = tmp_path / "absent.jpg"
    paths = [CHICKADEE, broken, MACAW, absent]
    identifier = make_identifier(runner, registry=real_registry)

    found = identifier.identify_files(birds, paths, top_k=3, workers=2)
    assert found.paths == paths
    assert found.results[1] is None and found.results[3] is None
    assert [path for path, _ in found.failures] == [broken, absent]
    assert all(message for _, message in found.failures)
    chickadee, macaw = found.results[0], found.results[2]
    assert chickadee is not None and macaw is not None
    assert chickadee.species[0].label.scientific_name == "Poecile atricapillus"
    assert macaw.species[0].label.scientific_name == "Ara macao"
    assert len(chickadee.species) == 3 and chickadee.timings is None and chickadee.photos == []

    # The same answer as one photo through identify: the same decode, model and ranking.
    single = classify(identifier, "aiy_birds_v1", file_photo(MACAW), top_k=3)
    assert [(h.index, h.score) for h in macaw.species] == [(h.index, h.score) for h in single.species]


# --- a model the tests build ---------------------------------------------------------------


def test_a_savedmodel_through_its_batcher_matches_the_model_called_directly(runner, toy_model, tmp_path):
    model_dir, labels = toy_model
    manifest = write_manifest(tmp_path / "models.toml", [toy_entry(model_dir, labels)])
    registry = open_registry(ModelSettings(manifest=manifest), AdmissionSettings(inference_workers=2))
    try:
        toy = registry.get_ready("toy_v1")
        assert toy.batcher is not None  # SavedModels are micro-batched: the other path of run_photo()
        image = photo(320, 200)  # below 2x224: no JPEG draft scaling, so the pixels match exactly
        identifier = make_identifier(runner, registry=registry)
        found = classify(identifier, "toy_v1", Photo(encode(image, "PNG"), "upload"), 10)

        reference = savedmodel_probabilities(model_dir, image)
        background = float(reference[TOY_BACKGROUND])
        reference[TOY_BACKGROUND] = -1
        expected = list(np.argsort(-reference, kind="stable")[:4])
        assert [hit.index for hit in found.species] == expected  # 4: every class but the background
        np.testing.assert_allclose(
            [h.score for h in found.species], reference[expected], rtol=1e-4, atol=1e-6
        )
        assert found.chosen.background == pytest.approx(background, rel=1e-4, abs=1e-6)
        assert [h.label.scientific_name for h in found.species] == [TOY_CLASSES[i] for i in expected]

        with pytest.raises(UnsupportedMediaType):
            classify(identifier, "toy_v1", Photo(b"no image here", "upload"))
    finally:
        registry.close()


# --- interpret: crafted probabilities, answered as identify_files answers each photo ---------


# genus -> family; keys are the fake's own
LINEAGE = {"Vanessa": "Nymphalidae", "Danaus": "Nymphalidae", "Pyrameis": "Nymphalidae"}


def taxon_line(name: str, key: int, genus: str) -> str:
    taxon = {
        "usageKey": key,
        "canonicalName": name,
        "rank": "SPECIES",
        "status": "ACCEPTED",
        "kingdom": "Animalia",
        "class": "Insecta",
        "order": "Lepidoptera",
        "family": LINEAGE[genus],
        "genus": genus,
        "kingdomKey": 1,
        "classKey": 216,
        "orderKey": 797,
        "familyKey": 7017,
        "genusKey": 1000 + sum(map(ord, genus)),
    }
    return json.dumps({"name": name, "matchType": "EXACT", "confidence": 99, "taxon": taxon})


def write_taxonomy(path: Path, atalanta_genus: str = "Vanessa") -> Path:
    lines = [
        taxon_line("Vanessa cardui", 101, "Vanessa"),
        taxon_line("Vanessa atalanta", 102, atalanta_genus),
        taxon_line("Danaus plexippus", 103, "Danaus"),
        json.dumps({"name": "Pieris rapae", "matchType": "NONE"}),  # unresolved: no taxon
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_interpret_says_not_an_organism_when_the_background_wins(runner):
    found = interpret(make_identifier(runner), crafted_model(), probabilities(0.1, 0.05, 0.0, 0.0, 0.85))
    assert found.no_match_reason == "not_an_organism"  # the classic presenter: "background"
    assert found.chosen.background == pytest.approx(0.85)
    assert [hit.index for hit in found.species] == [0, 1, 2, 3]  # ties in index order
    assert found.species[0].score == pytest.approx(0.1)


def test_interpret_low_confidence_follows_min_score(runner):
    probs = probabilities(0.3, 0.2, 0.1, 0.1, 0.05)
    default = interpret(make_identifier(runner), crafted_model(), probs)
    assert default.no_match_reason is None and default.species[0].label.scientific_name == "Vanessa cardui"
    strict = interpret(make_identifier(runner, RankingSettings(min_score=0.5)), crafted_model(), probs)
    assert strict.no_match_reason == "low_confidence" and strict.min_score == 0.5
    assert [hit.index for hit in strict.species] == [0, 1, 2, 3]  # still listed, best first
    fewer = make_identifier(runner, RankingSettings(top_k_default=2))
    assert len(interpret(fewer, crafted_model(), probs).species) == 2
    assert len(interpret(make_identifier(runner), crafted_model(), probs, top_k=3).species) == 3


def test_the_rollup_needs_a_taxonomy_and_an_unconfident_answer(runner, tmp_path):
    taxonomy = write_taxonomy(tmp_path / "gbif_taxonomy.jsonl")
    identifier = make_identifier(runner)
    split = probabilities(0.5, 0.4, 0.05, 0.0, 0.05)  # two Vanessa species share the answer

    found = interpret(identifier, crafted_model(taxonomy), split)
    assert found.rollup is not None
    assert (found.rollup.rank, found.rollup.name) == ("genus", "Vanessa")
    assert found.rollup.usageKey == 1000 + sum(map(ord, "Vanessa"))
    assert found.rollup.score == pytest.approx(0.9)
    taxa = {hit.label.scientific_name: hit.taxon for hit in found.species}
    assert taxa["Vanessa cardui"] is not None and taxa["Vanessa cardui"].usageKey == 101
    assert taxa["Pieris rapae"] is None  # not linked

    assert interpret(identifier, crafted_model(), split).rollup is None  # no taxonomy: no rollup
    confident = interpret(identifier, crafted_model(taxonomy), probabilities(0.85, 0.1, 0.0, 0.0, 0.05))
    assert confident.rollup is None and confident.species[0].taxon is not None
    # Vanessa 0.55 and Danaus 0.4 fall short at genus: the family holds them all.
    family = interpret(identifier, crafted_model(taxonomy), probabilities(0.45, 0.1, 0.4, 0.0, 0.05))
    assert family.rollup is not None
    assert (family.rollup.rank, family.rollup.name, family.rollup.usageKey) == ("family", "Nymphalidae", 7017)
    assert family.rollup.score == pytest.approx(0.95)


def test_a_rewritten_taxonomy_is_read_again_without_a_new_identifier(runner, tmp_path):
    taxonomy = write_taxonomy(tmp_path / "gbif_taxonomy.jsonl")
    identifier = make_identifier(runner)
    split = probabilities(0.5, 0.4, 0.05, 0.0, 0.05)
    first = interpret(identifier, crafted_model(taxonomy), split)
    assert first.rollup is not None and first.rollup.rank == "genus"

    write_taxonomy(taxonomy, atalanta_genus="Pyrameis")  # link-gbif rerun: another genus
    stat = taxonomy.stat()
    os.utime(taxonomy, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    second = interpret(identifier, crafted_model(taxonomy), split)
    assert second.rollup is not None
    assert (second.rollup.rank, second.rollup.name) == ("family", "Nymphalidae")  # genera now differ
    atalanta = next(hit for hit in second.species if hit.label.scientific_name == "Vanessa atalanta")
    assert atalanta.taxon is not None and atalanta.taxon.genus == "Pyrameis"
