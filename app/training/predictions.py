"""Photos -> ranked species names, from any of the three kinds of answer the service gives:
a classifier (or a trained head) and the lookup index. Evaluation compares these with the truth."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.index.artifacts import SpeciesIndex
from app.index.vote import query
from app.models.registry import LoadedModel
from app.pipeline import score_files
from app.ranking import rank
from app.settings import Settings


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


def ranked_from_scores(
    scores: npt.NDArray[np.float32], names: list[str], *, background_index: int | None, top_k: int
) -> list[Ranked]:
    """Per row: the top_k species (never the background class)."""
    out = []
    for row in scores:
        ranking = rank(row, top_k=top_k, background_index=background_index, min_score=0.0)
        out.append(Ranked([names[i] for i in ranking.indices], ranking.scores))
    return out


def species_names(model: LoadedModel) -> list[str]:
    background = model.spec.background_index
    return [label.scientific_name for i, label in enumerate(model.labels) if i != background]


def with_model(
    model: LoadedModel,
    paths: list[Path],
    settings: Settings,
    *,
    top_k: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> Predictions:
    scored = score_files(
        model, paths, max_pixels=settings.max_image_pixels, workers=workers, on_progress=on_progress
    )
    names = [label.scientific_name for label in model.labels]
    rows = ranked_from_scores(scored.scores, names, background_index=model.spec.background_index, top_k=top_k)
    return Predictions(
        source=f"{model.spec.format} {model.spec.name}",
        classes=species_names(model),
        paths=paths,
        ranked=[r if ok else None for r, ok in zip(rows, scored.ok, strict=True)],
        failures=scored.failures,
    )


def with_index(
    index: SpeciesIndex,
    embedder: LoadedModel,
    paths: list[Path],
    settings: Settings,
    *,
    top_k: int,
    workers: int,
    on_progress: Callable[[int], None] | None = None,
) -> Predictions:
    """The same project -> k-NN -> vote as /img_url (with the server's settings), for every photo."""
    scored = score_files(
        embedder, paths, max_pixels=settings.max_image_pixels, workers=workers, on_progress=on_progress
    )
    ranked: list[Ranked | None] = [None] * len(paths)
    good = np.flatnonzero(scored.ok)
    if good.size:
        per_photo = query(
            index,
            scored.scores[good],
            neighbours=settings.index_neighbours,
            ef_search=settings.index_ef_search,
            temperature=settings.index_temperature,
            top_k=top_k,
        )
        for i, votes in zip(good, per_photo, strict=True):
            ranked[i] = Ranked(
                [index.labels[v.label].scientific_name for v in votes], [v.score for v in votes]
            )
    return Predictions(
        source=f"index {index.manifest.version} ({index.manifest.embedder.name})",
        classes=[label.scientific_name for label in index.labels],
        paths=paths,
        ranked=ranked,
        failures=scored.failures,
    )
