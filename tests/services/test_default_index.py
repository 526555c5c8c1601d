"""The first-run index service (app/services/default_index.py), called directly: what it builds
from each photo layout, that it keeps an index already there, and that whatever stops it (no
photos, no usable embedder) is an answer saying how to build one, never an exception."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from app.index.artifacts import IndexDir
from app.services.default_index import ensure_default_index
from app.services.index_hint import DEFAULT_EMBEDDER, build_command
from app.settings import AdmissionSettings, IndexSettings, ModelSettings, Settings
from tests.cli.runner import species_folders
from tests.support.manifests import insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.shared import SHARED

LEEDS = SHARED / "datasets" / "leedsbutterfly"


def settings_for(manifest: Path, index: Path) -> Settings:
    return Settings(
        models=ModelSettings(manifest=manifest),
        admission=AdmissionSettings(inference_workers=2),
        index=IndexSettings(dir=index),
    )


@pytest.fixture
def embedder_manifest(tmp_path: Path) -> Path:
    return write_manifest(tmp_path / "models.toml", [insects_features_entry()])


def small_leeds(root: Path, species: int = 3, per_species: int = 2) -> Path:
    """The Leeds layout (images/NNN_XXXX.jpg, descriptions/NNN.txt) with a few of its photos."""
    (root / "images").mkdir(parents=True)
    (root / "descriptions").mkdir()
    for n in range(1, species + 1):
        shutil.copy(LEEDS / "descriptions" / f"{n:03d}.txt", root / "descriptions")
        for i in range(1, per_species + 1):
            (root / "images" / f"{n:03d}_{i:04d}.jpg").symlink_to(LEEDS / "images" / f"{n:03d}_{i:04d}.jpg")
    return root


@pytest.mark.shared
def test_builds_from_the_leeds_layout_inside_a_datasets_folder_then_keeps_it(tmp_path, embedder_manifest):
    datasets = tmp_path / "datasets"  # as ../shared/datasets: Leeds beside another data set
    small_leeds(datasets / "leedsbutterfly")
    (datasets / "mixed" / "birds").mkdir(parents=True)
    config = settings_for(embedder_manifest, tmp_path / "index")

    outcome = ensure_default_index(config, datasets)
    assert outcome.status == "built" and outcome.report is not None, outcome.message
    m = outcome.report.manifest
    assert (m.n_vectors, m.n_species, m.embedder.name) == (6, 3, DEFAULT_EMBEDDER)
    assert f"6 photos of 3 species from {datasets}, embedder {DEFAULT_EMBEDDER}" in outcome.message
    assert f"published as {tmp_path / 'index'}/{m.version}" in outcome.message
    labels = IndexDir(tmp_path / "index").load().labels
    assert labels[0].scientific_name == "Danaus plexippus" and labels[0].common_name == "Monarch"
    assert not (tmp_path / "index" / ".work").exists()  # the embedding chunks are cleaned up

    again = ensure_default_index(config, datasets)
    assert again.status == "kept" and m.version in again.message
    assert IndexDir(tmp_path / "index").current_version() == m.version  # not rebuilt


@pytest.mark.shared
def test_accepts_what_build_index_accepts_one_folder_per_species(tmp_path, embedder_manifest):
    photos = [(p, n) for p, n in leeds(SHARED) if p.name.endswith(("_0001.jpg", "_0002.jpg"))][:4]
    folders = species_folders(tmp_path / "photos", photos)
    outcome = ensure_default_index(settings_for(embedder_manifest, tmp_path / "index"), folders)
    assert outcome.status == "built" and outcome.report is not None, outcome.message
    assert (outcome.report.manifest.n_vectors, outcome.report.manifest.n_species) == (4, 2)


def test_no_photos_is_a_note_with_the_command_and_nothing_written(tmp_path, embedder_manifest):
    out = tmp_path / "index"
    outcome = ensure_default_index(settings_for(embedder_manifest, out), tmp_path / "nowhere")
    assert outcome.status == "not_built" and not outcome.built
    assert f"no photos at {tmp_path / 'nowhere'}" in outcome.message
    assert build_command(out) in outcome.message
    assert f"--embedder {DEFAULT_EMBEDDER}" in outcome.message
    assert not out.exists()


def test_an_embedder_that_is_not_installed_is_a_note_not_a_crash(tmp_path):
    missing = write_manifest(
        tmp_path / "models.toml", [insects_features_entry(file=str(tmp_path / "absent.tflite"))]
    )
    photos = tmp_path / "photos" / "Danaus_plexippus"
    photos.mkdir(parents=True)
    (photos / "a.jpg").write_bytes(b"never read")
    out = tmp_path / "index"
    outcome = ensure_default_index(settings_for(missing, out), tmp_path / "photos")
    assert outcome.status == "not_built", outcome.message
    assert f"embedder {DEFAULT_EMBEDDER} is not usable" in outcome.message
    assert build_command(out) in outcome.message
    assert IndexDir(out).current_version() is None
