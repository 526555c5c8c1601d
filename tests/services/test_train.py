"""services.train: a head on the insects model's frozen pre-logits, trained on a small Leeds
subset; its files and validation report, its manifest entry, and that the entry serves."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from app.imaging.photo import Photo
from app.index.species_folders import LabelledImage
from app.models.manifest import ManifestError, load_manifest, load_manifests
from app.models.registry import open_registry
from app.services.train import TrainOutcome, TrainRequest, entry_for, register, train
from app.settings import AdmissionSettings, ModelSettings
from tests.services.helpers import MAX_PIXELS, classify, make_identifier
from tests.support.manifests import insects_features_entry, write_manifest

pytestmark = pytest.mark.shared

# Two pairs of look-alikes: the head must separate species of one genus.
SPECIES = ("Heliconius charithonia", "Heliconius erato", "Vanessa atalanta", "Vanessa cardui")
COMMON = {"Vanessa cardui": "Painted Lady"}
EMBEDDER = "aiy_insects_features"


@pytest.fixture(scope="module")
def chosen(leeds_photos) -> dict[str, list[Path]]:
    """Per species: 8 photos to train on and the next 4 to check the served head with."""
    by_species: dict[str, list[Path]] = {name: [] for name in SPECIES}
    for path, name in leeds_photos:
        if name in by_species:
            by_species[name].append(path)
    return {name: paths[:12] for name, paths in by_species.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory, chosen, real_registry) -> tuple[TrainRequest, TrainOutcome, Path]:
    root = tmp_path_factory.mktemp("train")
    broken = root / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not really a JPEG")
    images = [LabelledImage(p, name, COMMON.get(name)) for name, paths in chosen.items() for p in paths[:8]]
    images.append(LabelledImage(broken, SPECIES[0]))
    request = TrainRequest(
        images=images, dataset="leeds-subset", name="leeds_head", target=root / "leeds_head", augment=["flip"]
    )
    outcome = train(
        request, real_registry.get_ready(EMBEDDER), max_pixels=MAX_PIXELS, workers=2, progress=False
    )
    return request, outcome, root


def test_the_head_separates_the_species_on_its_validation_split(trained):
    request, outcome, _ = trained
    head = outcome.trained
    assert head.classes == sorted(SPECIES)
    assert [path for path, _ in outcome.skipped] == [request.images[-1].path]  # listed, not fatal
    assert (len(head.train_rows), len(head.val_rows)) == (24, 8)  # 2 of 8 per species held out
    assert head.n_augmented == 24  # one flipped copy per training photo
    assert head.val_accuracy >= 0.75, head.val_accuracy  # measured 1.0
    assert outcome.report.top1 == pytest.approx(head.val_accuracy)  # the report scores the export
    assert outcome.report.evaluated == 8 and outcome.report.dataset == "leeds-subset"
    assert {c.name: c.support for c in outcome.report.classes} == dict.fromkeys(sorted(SPECIES), 2)


def test_the_head_its_labels_and_report_are_written(trained, real_registry):
    request, outcome, _ = trained
    target = request.target
    assert outcome.head == target / "head.npz" and outcome.head.is_file()
    meta = json.loads((target / "head.json").read_text())
    embedder = real_registry.get_ready(EMBEDDER)
    assert meta["embedder"]["name"] == EMBEDDER and meta["embedder"]["sha256"] == embedder.sha256
    assert meta["kind"] == "logistic" and meta["classes"] == 4 and meta["augment"] == ["flip"]
    assert meta["photos"] == {"train": 24, "validation": 8, "augmented": 24}
    with (target / "labels.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["id"], r["name"], r["common_name"]) for r in rows] == [
        (str(i), name, COMMON.get(name, "")) for i, name in enumerate(sorted(SPECIES))
    ]
    report = target / "report"
    names = {"report.json", "per_class.csv", "predictions.csv", "confusion.png", "mistakes.html"}
    assert names <= {p.name for p in report.iterdir()}
    assert json.loads((report / "report.json").read_text())["top1"] == outcome.report.top1
    val_paths = {str(request.images[i].path) for i in outcome.trained.val_rows}
    with (report / "predictions.csv").open(newline="") as fh:
        assert {row["path"] for row in csv.DictReader(fh)} == val_paths
    assert not (target / ".work").exists()


def test_register_adds_an_entry_that_loads_and_serves(trained, chosen, runner):
    request, _, root = trained
    shipped = write_manifest(root / "models.toml", [insects_features_entry()])
    manifest = root / "local.toml"  # the user manifest: its head runs on the shipped embedder
    assert register(manifest, entry_for(manifest, request, EMBEDDER), shipped) is True
    assert [m.name for m in load_manifest(shipped).models] == [EMBEDDER]  # left alone
    spec = next(m for m in load_manifests(shipped, manifest).models if m.name == "leeds_head")
    assert (spec.format, spec.embedder, spec.output, spec.task) == ("head", EMBEDDER, "logits", "classifier")
    # Beside the manifest: relative to it.
    assert spec.file == "leeds_head/head.npz" and spec.labels == "leeds_head/labels.csv"

    registry = open_registry(
        ModelSettings(manifest=shipped), AdmissionSettings(inference_workers=2), only="leeds_head"
    )
    try:
        head = registry.get_ready("leeds_head", task="classifier")
        identifier = make_identifier(runner, registry=registry)
        unseen = [(p, name) for name, paths in chosen.items() for p in paths[8:]]  # never trained on
        answers = [classify(identifier, head.name, Photo(p.read_bytes(), "file")) for p, _ in unseen]
        tops = [answer.species[0].label.scientific_name for answer in answers]
        correct = sum(top == name for top, (_, name) in zip(tops, unseen, strict=True))
        assert correct >= 13, (correct, tops)  # of 16; measured 16
    finally:
        registry.close()

    text = manifest.read_text()
    assert (
        register(manifest, entry_for(manifest, request, EMBEDDER), shipped) is False
    )  # the same entry: nothing to do
    other = replace(request, dataset="another dataset")  # same name, another description
    with pytest.raises(ManifestError, match="already has a model named 'leeds_head'"):
        register(manifest, entry_for(manifest, other, EMBEDDER), shipped)
    clash = replace(request, name=EMBEDDER)  # a name the shipped manifest has: refused, not an override
    with pytest.raises(ManifestError, match=f"{shipped} already has a model named '{EMBEDDER}'"):
        register(manifest, entry_for(manifest, clash, EMBEDDER), shipped)
    assert manifest.read_text() == text


def test_train_refuses_what_cannot_make_a_head(chosen, real_registry, tmp_path):
    embedder = real_registry.get_ready(EMBEDDER)
    images = [LabelledImage(p, name) for name, paths in chosen.items() for p in paths[:2]]
    unknown = TrainRequest(images=images, dataset="d", name="h", target=tmp_path / "h", augment=["rotate"])
    with pytest.raises(ValueError, match=r"unknown augmentation \['rotate'\].*crop.*flip"):
        train(unknown, embedder, max_pixels=MAX_PIXELS, workers=1, progress=False)
    assert not (tmp_path / "h").exists()  # refused before any embedding

    single = [*images, LabelledImage(chosen[SPECIES[0]][5], "Danaus plexippus")]
    lonely = TrainRequest(images=single, dataset="d", name="h", target=tmp_path / "h2")
    with pytest.raises(ValueError, match=r"fewer than 2 photos.*Danaus plexippus"):
        train(lonely, embedder, max_pixels=MAX_PIXELS, workers=1, progress=False)


def test_register_with_a_relative_target_points_the_manifest_at_the_head(trained, monkeypatch):
    request, _, root = trained
    (root / "volumes").mkdir(exist_ok=True)
    manifest = write_manifest(root / "volumes" / "models.toml", [insects_features_entry()])
    monkeypatch.chdir(root)  # train-head --out-dir leeds_head, run from root
    relative = replace(request, target=Path("leeds_head"))
    assert register(manifest, entry_for(manifest, relative, EMBEDDER))
    spec = next(m for m in load_manifest(manifest).models if m.name == "leeds_head")
    assert load_manifest(manifest).resolve(spec.file).resolve() == (root / "leeds_head" / "head.npz")
