"""evaluate: YOUR labelled photos through exactly what the server answers (the identify or the
lookup service), scored against the truth. Needs the ``training`` extra (scikit-learn)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.index.artifacts import SpeciesIndex
from app.models.registry import LoadedModel
from app.services.identify import Identifier
from app.services.lookup import Lookup
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
    return _score(predictions_of_model(model, found), truths, out, dataset)


def evaluate_index(
    lookup: Lookup,
    index: SpeciesIndex,
    embedder: LoadedModel,
    paths: list[Path],
    truths: list[str],
    out: Path,
    *,
    dataset: str,
    top_k: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> Evaluated:
    found = lookup.identify_files(
        index, embedder, paths, top_k=top_k, workers=workers, on_progress=on_progress
    )
    return _score(predictions_of_index(index, found), truths, out, dataset)


def _score(predictions: Predictions, truths: list[str], out: Path, dataset: str) -> Evaluated:
    report = evaluate(predictions, truths, dataset=dataset)  # ValueError: nothing to evaluate
    return Evaluated(report, predictions, write_report(report, predictions, out))
