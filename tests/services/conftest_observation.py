"""Fixtures and helpers for the tests of /v1/identify's models and their calibrations
(tests/services/test_calibration.py, tests/identification/test_service_identify.py import them;
each fixture is ``NAME_fixture``, registered as ``NAME``): the real birds and insects models with
their scope tensors and the shipped calibrations, every labelled real photo run once through
them (raw probabilities, features, the class-cosine signal), and the Identifier that asks them.
The held-out study's folds and in-sample answers are tests/identification/observations.py.

Everything here is session-wide: each photo is decoded and inferred a bounded number of times."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from app.enrich.taxonomies import TaxonomyBook
from app.identification.service import Identifier
from app.imaging.decode import decode_for
from app.imaging.photo import Photo
from app.models.manifest import load_manifest
from app.models.registry import LoadedModel, Registry, open_registry
from app.models.runner import InferenceRunner
from app.models.scope import ModelScope
from app.settings import AdmissionSettings, ModelSettings, RankingSettings
from tests.services.helpers import MAX_PIXELS
from tests.support.datasets import Labelled, photos
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, with_scope, write_manifest
from tests.support.server import REPO
from tests.support.shared import SHARED

SHIPPED_MANIFEST = REPO / "volumes" / "models" / "models.toml"
BIRDS_MODEL, INSECTS_MODEL = BIRDS[0], INSECTS[0]
MIN_SCORE = 0.1


# --- manifests --------------------------------------------------------------------------------


def shipped_entry(
    model: tuple[str, str, int, str], *, calibration: Path | str | None = "shipped"
) -> dict[str, Any]:
    """``aiy_entry`` plus what volumes/models/models.toml declares for /v1/identify (sha256,
    features and class-weights tensors) and, by default, the shipped calibration file."""
    spec = next(m for m in load_manifest(SHIPPED_MANIFEST).models if m.name == model[0])
    return with_scope(aiy_entry(*model) | {"sha256": spec.sha256}, calibration=calibration)


def shipped_calibration_path(model: str) -> Path:
    spec = next(m for m in load_manifest(SHIPPED_MANIFEST).models if m.name == model)
    assert spec.calibration is not None
    return SHIPPED_MANIFEST.parent / spec.calibration


@pytest.fixture(scope="session", name="observation_registry")
def observation_registry_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The birds and insects models as /v1/identify serves them: scope tensors + shipped
    calibrations."""
    folder = tmp_path_factory.mktemp("observation")
    manifest = write_manifest(folder / "models.toml", [shipped_entry(BIRDS), shipped_entry(INSECTS)])
    registry = open_registry(ModelSettings(manifest=manifest), AdmissionSettings(inference_workers=2))
    for model in registry.entries():
        assert model.state == "ready", (model.name, model.reason)
        assert model.scope is not None and model.scope.signal == "class_cosine", model.name
    yield registry
    registry.close()


def make_service(registry: Registry, runner: InferenceRunner) -> Identifier:
    """/v1/identify's Identifier (no place, no species index), RANKING_MIN_SCORE ``MIN_SCORE``."""
    return Identifier(
        registry,
        runner,
        TaxonomyBook(),
        RankingSettings(min_score=MIN_SCORE),
        max_pixels=MAX_PIXELS,
        geo=None,
    )


def file_photo(path: Path) -> Photo:
    return Photo(path.read_bytes(), "file", name=path.name)


# --- the labelled photos ----------------------------------------------------------------------


@pytest.fixture(scope="session", name="labelled")
def labelled_fixture() -> list[Labelled]:
    rows = photos(SHARED)
    assert len(rows) == 439, len(rows)  # Leeds 300, mixed 120, samples 4, scikit-image 15
    return rows


def in_scope_for(model: str, labelled: list[Labelled]) -> npt.NDArray[np.bool_]:
    """The model's own group's photos of species it knows (what the shipped calibration fits on)."""
    group = "birds" if model == BIRDS_MODEL else "insects"
    return np.array([r.group == group and r.known for r in labelled])


def species_index(model: LoadedModel) -> dict[str, int]:
    return {label.scientific_name.lower(): i for i, label in enumerate(model.labels)}


# --- every photo once through the models (no service) -----------------------------------------


@dataclass(frozen=True)
class Signals:
    """One photo through one model, uncalibrated."""

    probabilities: npt.NDArray[np.float32]  # [C] the model's own (q/256)
    features: npt.NDArray[np.float32]  # [F] pre-logits
    top: int  # best species, never the background class
    cosine: float  # the class_cosine scope signal
    background: float


def models_of(registry: Registry) -> dict[str, LoadedModel]:
    return {m.name: m for m in registry.entries() if m.spec.task == "classifier"}


def spec_key(model: LoadedModel) -> tuple[object, ...]:
    spec = model.input_spec
    return (spec.size, spec.dtype, spec.range)


@pytest.fixture(scope="session", name="signals")
def signals_fixture(observation_registry: Registry, labelled: list[Labelled]) -> list[dict[str, Signals]]:
    """Per photo (the order of ``labelled``), per model: what the model makes of it, decoded as
    the service decodes (``decode_for``)."""
    models = models_of(observation_registry)

    def one(row: Labelled) -> dict[str, Signals]:
        specs = {spec_key(m): m.input_spec for m in models.values()}
        images = decode_for(row.path.read_bytes(), list(specs.values()), max_pixels=MAX_PIXELS)
        decoded = dict(zip(specs, images, strict=True))
        out = {}
        for name, model in models.items():
            assert model.scope is not None
            probabilities, features = model.predict_with_features(decoded[spec_key(model)].pixels[np.newaxis])
            assert features is not None
            plain = ModelScope(None, model.scope.weights, background_index=model.spec.background_index)
            top = plain.assess(probabilities[0], None).top
            background = float(probabilities[0][model.spec.background_index])
            cosine = plain.class_cosine(features[0], top)
            out[name] = Signals(probabilities[0], features[0], top, cosine, background)
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, labelled))
