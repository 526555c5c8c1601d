"""services.calibration: the fit on the real models and the labelled photos in ../shared
reproduces the shipped calibrations (volumes/models/calibration/*.json); the file it writes loads,
one fitted for other weights is refused; a model without a calibration keeps the classifier
endpoints' rule (max probability >= MIN_SCORE)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.identification.request import Request
from app.index.species_folders import LabelledImage
from app.models.registry import LoadedModel, Registry, open_registry
from app.models.scope import Calibration, calibrate, load_calibration
from app.services import calibration as service
from app.settings import AdmissionSettings, ModelSettings
from tests.services.conftest_observation import (
    BIRDS_MODEL,
    INSECTS_MODEL,
    MIN_SCORE,
    Signals,
    file_photo,
    in_scope_for,
    labelled_fixture,  # noqa: F401
    make_service,
    observation_registry_fixture,  # noqa: F401
    shipped_calibration_path,
    shipped_entry,
    signals_fixture,  # noqa: F401
    species_index,
)
from tests.services.helpers import MAX_PIXELS
from tests.support.datasets import Labelled, photos
from tests.support.figures import figure
from tests.support.manifests import BIRDS, write_manifest
from tests.support.shared import SHARED

NOMINAL_TEMPERATURE = {BIRDS_MODEL: 0.54, INSECTS_MODEL: 0.53}
CHICKADEE = SHARED / "samples" / "Poecile_atricapillus_01.bmp"


def calibration_images(group: str) -> list[LabelledImage]:
    """What `make calibration` fits on (tests.support.datasets.calibration_sets): the group's
    photos of species the model knows. insects: Leeds 300 + the dragonfly; birds: mixed 55 + 2
    samples."""
    return [
        LabelledImage(r.path, r.name)
        for r in photos(SHARED, with_skimage=False)
        if r.group == group and r.known
    ]


@pytest.fixture(scope="module")
def fits(observation_registry: Registry) -> dict[str, service.CalibrationFit]:
    out = {}
    for name, group in ((BIRDS_MODEL, "birds"), (INSECTS_MODEL, "insects")):
        model = observation_registry.get_ready(name)
        out[name] = service.fit(
            model, calibration_images(group), dataset=f"test: {group}", max_pixels=MAX_PIXELS, workers=2
        )
    return out


def raw_ece(model: LoadedModel, rows: list[Labelled], found: list[Signals]) -> float:
    """ECE of the model's own species probabilities (q/256, no floor), for comparison with the
    fit's ``ece_before`` (softmax(log(max(q, floor))): the floor renormalised at T = 1)."""
    index = species_index(model)
    truth = np.array([index[r.name.lower()] for r in rows], np.int64)
    species = np.stack([s.probabilities for s in found])
    species[:, model.spec.background_index] = 0.0  # the background is never a species answer
    return service.ece(species, truth)


@pytest.mark.shared
@pytest.mark.parametrize("name", [BIRDS_MODEL, INSECTS_MODEL])
def test_the_fit_reproduces_the_shipped_calibration(
    name, fits, observation_registry, labelled, signals, tmp_path
):
    fitted = fits[name].calibration
    shipped = load_calibration(shipped_calibration_path(name), observation_registry.get_ready(name).sha256)
    assert shipped is not None
    assert not fits[name].failures and not fits[name].not_in_model
    f = fitted.figures
    figure(
        f"calibration {name}: T {fitted.temperature:.4f} (shipped {shipped.temperature:.4f}), threshold "
        f"{fitted.scope_signal} >= {fitted.scope_threshold:.6f} (shipped {shipped.scope_threshold:.6f}), "
        f"{fitted.photos} photos, acceptance on them {f['acceptance_fitted']:.3f}, top-1 {f['top1']:.3f}, "
        f"NLL {f['nll_before']:.3f} -> {f['nll_after']:.3f}, "
        f"ECE {f['ece_before']:.3f} -> {f['ece_after']:.3f}"
    )
    assert fitted.scope_signal == "class_cosine"
    assert abs(fitted.temperature - NOMINAL_TEMPERATURE[name]) <= 0.05
    assert abs(fitted.temperature - shipped.temperature) <= 1e-6  # same photos, same number
    assert abs(fitted.scope_threshold - shipped.scope_threshold) <= 1e-6
    assert (fitted.photos, fitted.photos_in_model) == (shipped.photos, shipped.photos_in_model)
    assert f["acceptance_fitted"] >= 0.95
    assert f["ece_after"] < f["ece_before"]
    assert f["nll_after"] < f["nll_before"]

    # The fit's "before" is the floored distribution at T = 1, not the model's own; the gain holds
    # against the model's own probabilities too.
    mine = np.flatnonzero(in_scope_for(name, labelled))
    before = raw_ece(
        observation_registry.get_ready(name), [labelled[i] for i in mine], [signals[i][name] for i in mine]
    )
    after = f["ece_after"]
    figure(f"calibration {name}: ECE of the model's own probabilities {before:.3f} -> calibrated {after:.3f}")
    assert f["ece_after"] < before

    written = tmp_path / "calibration" / f"{name}.json"
    service.write(fitted, written)
    assert load_calibration(written, fitted.sha256) == fitted
    assert load_calibration(written, None) == fitted


@pytest.mark.shared
def test_a_calibration_for_other_weights_or_unreadable_is_refused(fits, tmp_path):
    fitted = fits[BIRDS_MODEL].calibration
    assert fitted.sha256 is not None
    path = tmp_path / "birds.json"
    service.write(fitted, path)
    assert load_calibration(path, "0" * 64) is None  # fitted for other weights
    assert load_calibration(tmp_path / "absent.json", fitted.sha256) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert load_calibration(tmp_path / "bad.json", fitted.sha256) is None
    (tmp_path / "extra.json").write_text(fitted.model_copy().model_dump_json()[:-1] + ', "pickle": 1}')
    assert load_calibration(tmp_path / "extra.json", fitted.sha256) is None


@pytest.fixture(scope="module")
def fallback_registry(tmp_path_factory: pytest.TempPathFactory, fits) -> Iterator[Registry]:
    """The birds model three times: no calibration; a calibration fitted for other weights; a
    calibration asking for class_cosine on a model declaring no class weights."""
    folder = tmp_path_factory.mktemp("fallback")
    other: Calibration = fits[BIRDS_MODEL].calibration.model_copy(update={"sha256": "0" * 64})
    service.write(other, folder / "other_weights.json")
    no_weights = shipped_entry(BIRDS)
    del no_weights["class_weights_tensor"]
    entries = [
        shipped_entry(BIRDS, calibration=None) | {"name": "birds_uncalibrated"},
        shipped_entry(BIRDS, calibration=folder / "other_weights.json") | {"name": "birds_other_weights"},
        no_weights | {"name": "birds_no_weights"},
    ]
    for entry in entries[1:]:
        del entry["group"]  # a group has one model
    registry = open_registry(
        ModelSettings(manifest=write_manifest(folder / "models.toml", entries)),
        AdmissionSettings(inference_workers=2),
    )
    yield registry
    registry.close()


@pytest.mark.shared
@pytest.mark.parametrize("name", ["birds_uncalibrated", "birds_other_weights", "birds_no_weights"])
def test_without_a_usable_calibration_the_scope_is_max_probability_at_min_score(
    name, fallback_registry, runner
):
    model = fallback_registry.get_ready(name)
    assert model.scope is not None
    assert model.scope.calibration is None and model.scope.signal == "max_probability"
    assert model.scope.threshold is None

    identifier = make_service(fallback_registry, runner)
    answer = asyncio.run(identifier.identify(Request([file_photo(CHICKADEE)])))
    verdict = next(v for v in answer.verdicts if v.model.name == name)
    raw = model.predict(_pixels(model, CHICKADEE))[0]
    species = raw.copy()
    species[model.spec.background_index] = -1.0
    assert verdict.signal == "max_probability"
    assert verdict.threshold == MIN_SCORE
    assert verdict.scope == pytest.approx(float(species.max()))
    np.testing.assert_array_equal(verdict.per_photo[0], raw)  # uncalibrated: the model's own
    assert verdict.accepted == (species.max() >= MIN_SCORE)
    assert not answer.no_match and answer.species[0].label.scientific_name == "Poecile atricapillus"
    # calibrate() at T = 1 is not the identity (the floor is renormalised): the fallback must not apply it
    assert not np.allclose(calibrate(raw, 1.0, service.FLOOR), raw, atol=1e-3)


def _pixels(model: LoadedModel, path: Path) -> np.ndarray:
    from app.imaging.decode import decode

    return decode(path.read_bytes(), model.input_spec, max_pixels=MAX_PIXELS).pixels[np.newaxis]
