"""Fixtures for the service tests and the request path's (tests/identification uses them as
they are): the services are called directly (no HTTP), on the real models from ../shared where
the test is marked ``shared`` and on a small SavedModel the tests build where it can run without
them. Loaded registries, the Leeds split and its index are session-wide (built once per
directory; a test that writes to the index copies it first)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from app.models.registry import Registry, open_registry
from app.models.runner import InferenceRunner
from app.settings import AdmissionSettings, ModelSettings
from tests.services.helpers import LEFT_OUT, MAX_PIXELS, TOY_CLASSES, species_folders
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, insects_features_entry, write_manifest
from tests.support.models import build_classifier_savedmodel
from tests.support.reference import leeds
from tests.support.shared import SHARED


@pytest.fixture(scope="session")
def runner() -> Iterator[InferenceRunner]:
    pool = InferenceRunner(workers=2, max_queue=8)
    yield pool
    pool.shutdown()


# --- a model the tests build (runs without ../shared) --------------------------------------


@pytest.fixture(scope="session")
def toy_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A 5-class float32 SavedModel (tests/support/models.py) and its label map; class 4 is the
    background."""
    root = tmp_path_factory.mktemp("toy")
    model = build_classifier_savedmodel(root / "toy_savedmodel", num_classes=len(TOY_CLASSES))
    labels = root / "labelmap.csv"
    labels.write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(TOY_CLASSES)))
    return model, labels


# --- the real models (only tests marked shared ask for these) ------------------------------


@pytest.fixture(scope="session")
def real_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    entries = [aiy_entry(*BIRDS), aiy_entry(*INSECTS), insects_features_entry()]
    return write_manifest(tmp_path_factory.mktemp("real") / "models.toml", entries)


@pytest.fixture(scope="session")
def real_registry(real_manifest: Path) -> Iterator[Registry]:
    registry = open_registry(ModelSettings(manifest=real_manifest), AdmissionSettings(inference_workers=2))
    yield registry
    registry.close()


@pytest.fixture(scope="session")
def leeds_photos() -> list[tuple[Path, str]]:
    """The 300 Leeds photos with their species (the label maps' spelling), 30 per species."""
    photos = leeds(SHARED)
    assert len(photos) == 300
    return photos


@pytest.fixture(scope="session")
def leeds_split(tmp_path_factory: pytest.TempPathFactory, leeds_photos) -> dict[str, Path]:
    """``build``: 25 photos of each of 8 species; ``held``: every 6th photo of all 10 species
    (never indexed); ``extra``: the other photos of the two species left out of the build."""
    root = tmp_path_factory.mktemp("leeds")
    parts: dict[str, list[tuple[Path, str]]] = {"build": [], "held": [], "extra": []}
    for i, (image, name) in enumerate(leeds_photos):
        part = "held" if i % 6 == 0 else "extra" if name in LEFT_OUT else "build"
        parts[part].append((image, name))
    return {part: species_folders(root / part, photos) for part, photos in parts.items()}


@pytest.fixture(scope="session")
def leeds_index(tmp_path_factory: pytest.TempPathFactory, leeds_split, real_registry) -> Path:
    """An index of the 200 ``build`` photos, embedded by the insects model's pre-logits."""
    from app.index.builder import build_index

    out = tmp_path_factory.mktemp("index") / "index"
    report = build_index(
        leeds_split["build"],
        out,
        real_registry.get_ready("aiy_insects_features"),
        max_pixels=MAX_PIXELS,
        workers=2,
        progress=False,
    )
    assert (report.photos, report.manifest.n_species) == (200, 8)
    return out
