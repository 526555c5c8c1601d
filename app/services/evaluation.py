"""evaluate: YOUR labelled photos through exactly what the server answers (the identify or the
lookup service), scored against the truth. Needs the ``training`` extra (scikit-learn).

A classifier's answers are ``Identifier.identify_files``, each photo decided as a request is, as
``/v1/classify/MODEL`` gives them (the model's own, uncalibrated); where the model has a
calibration file, the same photos' top species is also scored after its temperature
(``app.models.scope.calibrate``, what ``/v1/identify`` starts from), so the report shows the
calibration error before and after."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.identification.answer import Answer
from app.identification.lookup import Lookup
from app.identification.service import Identifier
from app.index.artifacts import SpeciesIndex
from app.models.registry import LoadedModel
from app.models.scope import calibrate
from app.services.predictions import predictions_of_index, predictions_of_model
from app.training.evaluate import EvaluationReport, evaluate, write_report
from app.training.predictions import Predictions


@dataclass(frozen=True, slots=True)
class Evaluated:
    report: EvaluationReport
    predictions: Predictions
    files: dict[str, Path]  # what was written to the report folder


def evaluate_model(
    identifier: Identifier,
    model: LoadedModel,
    paths: list[Path],
    truths: list[str],
    out: Path,
    *,
    dataset: str,
    top_k: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluated:
    found = identifier.identify_files(model, paths, top_k=top_k, workers=workers, on_progress=on_progress)
    predictions = predictions_of_model(model, found)
    calibration = model.scope.calibration if model.scope is not None else None
    if calibration is not None:
        assert found.probabilities is not None  # identify_files keeps them
        predictions.calibrated_top1 = calibrated_top1(
            found.probabilities, found.results, calibration.temperature, calibration.probability_floor
        )
        predictions.calibration = f"temperature {calibration.temperature:.3f} ({calibration.fitted_on})"
    return _score(predictions, truths, out, dataset)


def calibrated_top1(
    outputs: npt.NDArray[np.float32],
    results: list[Answer | None],
    temperature: float,
    floor: float,
) -> list[float | None]:
    """Each photo's answered top species, its probability after temperature scaling (the
    ranking is the same: the scaling is monotonic)."""
    out: list[float | None] = []
    for row, result in zip(outputs, results, strict=True):
        if result is None:
            out.append(None)
        elif not result.species:
            out.append(0.0)
        else:
            out.append(float(calibrate(row, temperature, floor)[result.species[0].index]))
    return out


def evaluate_index(
    lookup: Lookup,
    index: SpeciesIndex,
    embedder: LoadedModel,
    paths: list[Path],
    truths: list[str],
    out: Path,
    root: Path | None = None,
    *,
    dataset: str,
    top_k: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluated:
    """``root``: the index's folder (its taxonomy), when it is not the one ``lookup`` serves."""
    found = lookup.identify_files(
        index, embedder, paths, top_k=top_k, workers=workers, on_progress=on_progress, root=root
    )
    return _score(predictions_of_index(index, found), truths, out, dataset)


def _score(predictions: Predictions, truths: list[str], out: Path, dataset: str) -> Evaluated:
    report = evaluate(predictions, truths, dataset=dataset)  # ValueError: nothing to evaluate
    return Evaluated(report, predictions, write_report(report, predictions, out))
