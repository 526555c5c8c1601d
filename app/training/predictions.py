"""Ranked species names per photo, whatever answered them (a classifier, a trained head, the
lookup index): what evaluation compares with the truth and what ``classify FOLDER`` writes.
No scikit-learn here: the lite image's CLI imports this."""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from app.identification.decide import top_k_species
from app.models.registry import LoadedModel


@dataclass(frozen=True, slots=True)
class Ranked:
    names: list[str]  # best first
    scores: list[float]


@dataclass
class Predictions:
    source: str  # "classifier aiy_insects_v1", "index volumes/index (2026...)"
    classes: list[str]  # every name the source can answer
    paths: list[Path]
    ranked: list[Ranked | None]  # None: the photo could not be read
    failures: list[tuple[Path, str]] = field(default_factory=list)
    # Per photo (None: unreadable): the top species' probability after the model's calibration
    # (the temperature of ``calibration/<model>.json``, what /v1/identify starts from); the
    # whole list None when the source has no calibration. ``ranked`` keeps the source's own.
    calibrated_top1: list[float | None] | None = None
    calibration: str | None = None  # which one: "temperature 0.530 (fitted on ...)"


def ranked_from_probabilities(
    probabilities: npt.NDArray[np.float32], names: list[str], *, background_index: int | None, top_k: int
) -> list[Ranked]:
    """Per row: the top_k species (never the background class)."""
    out = []
    for row in probabilities:
        indices, scores = top_k_species(row, top_k, background_index)
        out.append(Ranked([names[i] for i in indices], scores))
    return out


def species_names(model: LoadedModel) -> list[str]:
    background = model.spec.background_index
    return [label.scientific_name for i, label in enumerate(model.labels) if i != background]


def write_predictions_csv(predictions: Predictions, fh: TextIO) -> None:
    """One row per photo and rank (``path,rank,scientific_name,score,error``); an unreadable
    photo gets one row with its error. ``fh``: a file opened with ``newline=""``, or stdout."""
    errors = {str(p): e for p, e in predictions.failures}
    writer = csv.writer(fh)
    writer.writerow(["path", "rank", "scientific_name", "score", "error"])
    for photo, ranked in zip(predictions.paths, predictions.ranked, strict=True):
        if ranked is None:
            writer.writerow([photo, "", "", "", errors.get(str(photo), "unreadable")])
            continue
        for position, (name, score) in enumerate(zip(ranked.names, ranked.scores, strict=True), 1):
            writer.writerow([photo, position, name, f"{score:.6f}", ""])
