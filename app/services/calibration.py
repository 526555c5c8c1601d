"""calibrate: fit a classifier's temperature and scope threshold on labelled photos of its own
group (``app.models.scope``), and measure what the fit gives on them."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.index.species_folders import LabelledImage
from app.models.inference import infer_files
from app.models.registry import LoadedModel
from app.models.scope import Calibration, ModelScope, ScopeSignal, calibrate
from app.training.reliability import reliability

FLOOR = 1 / 512  # half a step of the AIY models' uint8 output: a 0 is "below 1/256", not impossible
Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class CalibrationFit:
    calibration: Calibration
    not_in_model: list[str]  # species of the photos the model has no class for (threshold only)
    failures: list[tuple[Path, str]]


def nll(probabilities: Array, truth: npt.NDArray[np.int64], temperature: float) -> float:
    p = calibrate(probabilities, temperature, FLOOR)
    return float(-np.mean(np.log(np.maximum(p[np.arange(len(truth)), truth], 1e-12))))


def fit_temperature(probabilities: Array, truth: npt.NDArray[np.int64]) -> float:
    """Golden-section search of log T in [1/20, 20] for the least negative log-likelihood."""
    low, high = math.log(0.05), math.log(20.0)
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(60):
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        if nll(probabilities, truth, math.exp(a)) < nll(probabilities, truth, math.exp(b)):
            high = b
        else:
            low = a
    return math.exp((low + high) / 2)


def ece(probabilities: Array, truth: npt.NDArray[np.int64], bins: int = 10) -> float:
    """Expected calibration error of the top-1 confidence (``app.training.reliability``)."""
    correct = probabilities.argmax(axis=1) == truth
    return reliability(probabilities.max(axis=1), correct, bins=bins).ece


def fit(
    model: LoadedModel,
    images: list[LabelledImage],
    *,
    dataset: str,
    max_pixels: int,
    workers: int,
    acceptance: float = 0.95,
    on_progress: Callable[[int], None] | None = None,
) -> CalibrationFit:
    """``images``: photos of the model's own group (every one in scope); those whose species the
    model has also fit the temperature. The threshold keeps ``acceptance`` of them in scope."""
    if model.scope is None:
        raise ValueError(f"{model.name} is not a classifier")
    paths = [image.path for image in images]
    inferred = infer_files(
        model, paths, max_pixels=max_pixels, workers=workers, on_progress=on_progress, with_features=True
    )
    ok = np.flatnonzero(inferred.ok)
    if len(ok) < 10:
        raise ValueError(f"{len(ok)} readable photos: a calibration needs at least 10")
    signal, scores = scope_scores(
        model, inferred.outputs[ok], None if inferred.features is None else inferred.features[ok]
    )
    threshold = float(np.quantile(scores, 1.0 - acceptance, method="lower"))
    index = {label.scientific_name.lower(): i for i, label in enumerate(model.labels)}
    known = [i for i in ok if images[i].scientific_name.lower() in index]
    missing = sorted({images[i].scientific_name for i in ok} - {images[i].scientific_name for i in known})
    figures: dict[str, float] = {"acceptance_fitted": float(np.mean(scores >= threshold))}
    temperature = 1.0
    if len(known) >= 10:
        truth = np.array([index[images[i].scientific_name.lower()] for i in known], np.int64)
        temperature, measured = fit_with_figures(inferred.outputs[known], truth)
        figures |= measured
    calibration = Calibration(
        model=model.name,
        sha256=model.sha256,
        temperature=temperature,
        probability_floor=FLOOR,
        scope_signal=signal,
        scope_threshold=threshold,
        acceptance=acceptance,
        fitted_on=dataset,
        photos=len(ok),
        photos_in_model=len(known),
        figures=figures,
    )
    return CalibrationFit(calibration, missing, inferred.failures)


def scope_scores(
    model: LoadedModel, outputs: Array, features: Array | None
) -> tuple[ScopeSignal, npt.NDArray[np.float64]]:
    """Each photo's scope signal, uncalibrated: class_cosine where the model gives features and
    class weights, else the max species probability."""
    assert model.scope is not None
    weights = model.scope.weights
    signal: ScopeSignal = (
        "class_cosine" if weights is not None and features is not None else "max_probability"
    )
    uncalibrated = ModelScope(None, weights, background_index=model.spec.background_index)
    scores = []
    for row, probabilities in enumerate(outputs):
        assessment = uncalibrated.assess(probabilities, None)  # the top species, max probability
        if signal == "class_cosine" and features is not None:
            scores.append(uncalibrated.class_cosine(features[row], assessment.top))
        else:
            scores.append(assessment.scope)
    return signal, np.array(scores, np.float64)


def fit_with_figures(probabilities: Array, truth: npt.NDArray[np.int64]) -> tuple[float, dict[str, float]]:
    """ "before" is the model's own probabilities (not renormalised over the floor)."""
    temperature = fit_temperature(probabilities, truth)
    own = np.maximum(probabilities[np.arange(len(truth)), truth].astype(np.float64), FLOOR)
    return temperature, {
        "top1": float(np.mean(probabilities.argmax(axis=1) == truth)),
        "nll_before": float(-np.mean(np.log(own))),
        "nll_after": nll(probabilities, truth, temperature),
        "ece_before": ece(probabilities, truth),
        "ece_after": ece(calibrate(probabilities, temperature, FLOOR), truth),
    }


def write(calibration: Calibration, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(calibration.model_dump_json(indent=2) + "\n", encoding="utf-8")
    partial.replace(path)
