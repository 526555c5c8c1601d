"""Answers for many photos as ranked names (``Predictions``): what ``classify FOLDER`` writes and
``evaluate`` scores. No scikit-learn: the lite image's CLI imports this."""

from __future__ import annotations

from collections.abc import Sequence

from app.identification.answer import Answer, FileAnswers
from app.identification.lookup import FileLookups, LookupAnswer
from app.index.artifacts import SpeciesIndex
from app.models.registry import LoadedModel
from app.training.predictions import Predictions, Ranked, species_names


def _ranked(results: Sequence[Answer | LookupAnswer | None]) -> list[Ranked | None]:
    return [
        None
        if r is None
        else Ranked([hit.label.scientific_name for hit in r.species], [hit.score for hit in r.species])
        for r in results
    ]


def predictions_of_model(model: LoadedModel, found: FileAnswers) -> Predictions:
    return Predictions(
        source=f"{model.spec.format} {model.spec.name}",
        classes=species_names(model),
        paths=found.paths,
        ranked=_ranked(found.results),
        failures=found.failures,
    )


def predictions_of_index(index: SpeciesIndex, found: FileLookups) -> Predictions:
    return Predictions(
        source=f"index {index.manifest.version} ({index.manifest.embedder.name})",
        classes=[label.scientific_name for label in index.labels],
        paths=found.paths,
        ranked=_ranked(found.results),
        failures=found.failures,
    )
