"""Classify a photo with a model: ranked species, taxonomy, rollup, why there is no match,
and timings. The one path for the server, ``classify PHOTO``, ``classify FOLDER`` and
``evaluate --model``: all of them end in ``Identifier.interpret``. A request may steer it
(``app.services.steering``: a taxon, a species list, the place, its own thresholds)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.taxonomies import TaxonomyBook
from app.enrich.taxonomy import Rollup, Taxon
from app.imaging.decode import DecodedImage
from app.imaging.photo import Photo
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner
from app.pipeline import infer, infer_files
from app.ranking import NoMatchReason, rank
from app.services.geo import GeoOutcome, GeoWeighting, Place
from app.services.steered import FilterReport, Steered, answer_rollup, narrow_now, report, steer
from app.services.steering import Plan, Steering, plan_for
from app.settings import RankingSettings


class InferenceObserver(Protocol):
    """Where stage timings go (the server's Prometheus metrics; nothing in the CLI)."""

    def observe_inference(self, model: str, decode_ms: float, infer_ms: float) -> None: ...

    def observe_shared(self, decode_ms: float, infer_ms: dict[str, float]) -> None: ...

    def observe_fetch(self, fetch_ms: float, size: int) -> None: ...


@dataclass(frozen=True, slots=True)
class Timings:
    decode_ms: float
    infer_ms: float
    total_ms: float
    fetch_ms: float | None = None
    search_ms: float | None = None


@dataclass(frozen=True, slots=True)
class SpeciesHit:
    rank: int
    index: int  # class index in the model's label map
    label: Label
    score: float  # the model's probability (after the filters and the place, when steered)
    taxon: Taxon | None
    vision_score: float | None = None  # before the place (after the taxon/list filters)
    geo_score: float | None = None  # what the place multiplied it by (app.services.geo), None without
    geo_records: int | None = None  # GBIF's records of the species in the cell


@dataclass(frozen=True, slots=True)
class Identification:
    model: LoadedModel
    species: list[SpeciesHit]  # best first, never the background class
    no_match_reason: NoMatchReason | None
    background_score: float | None
    rollup: Rollup | None
    photo: Photo | None = None
    image: DecodedImage | None = None
    timings: Timings | None = None
    filters: FilterReport | None = None  # what the taxon/list filters kept; None without
    geo: GeoOutcome | None = None
    min_score: float | None = None  # the thresholds this answer used
    rollup_threshold: float | None = None

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None


@dataclass
class FileIdentifications:
    paths: list[Path]
    results: list[Identification | None]  # None: the photo could not be read
    failures: list[tuple[Path, str]] = field(default_factory=list)
    # [N, C] the model's outputs, a row per path (an unreadable photo's row means nothing):
    # what evaluate scores again after the model's calibration.
    probabilities: npt.NDArray[np.float32] | None = None


def observe(
    observer: InferenceObserver | None, model: str, photo: Photo, decode_ms: float, infer_ms: float
) -> None:
    if observer is None:
        return
    observer.observe_inference(model, decode_ms, infer_ms)
    if photo.fetch_ms is not None:
        observer.observe_fetch(photo.fetch_ms, len(photo.data))


class Identifier:
    def __init__(
        self,
        runner: InferenceRunner,
        taxonomies: TaxonomyBook,
        ranking: RankingSettings,
        *,
        max_pixels: int,
        observer: InferenceObserver | None = None,
        geo: GeoWeighting | None = None,
    ) -> None:
        self.runner = runner
        self.taxonomies = taxonomies
        self.ranking = ranking
        self.max_pixels = max_pixels
        self.observer = observer
        self.geo = geo

    def plan(self, model: LoadedModel, steering: Steering | None = None) -> Plan:
        """What the request's filters keep of the model: call it before fetching the photo, so
        an unknown taxon or a list the model has none of costs no download (400/404/409)."""
        return plan_for([model], self.taxonomies, steering or Steering(), self.ranking)

    async def identify(
        self,
        model: LoadedModel,
        photo: Photo,
        top_k: int | None = None,
        plan: Plan | None = None,
        place: Place | None = None,
    ) -> Identification:
        """Decode and infer off the event loop (a worker thread, or the model's batcher)."""
        started = time.perf_counter()
        plan = plan or self.plan(model)
        inference = await infer(self.runner, model, photo.data, self.max_pixels)
        observe(self.observer, model.name, photo, inference.decode_ms, inference.infer_ms)
        taxonomy = self.taxonomies.get(model.taxonomy_path)
        steered = await steer(inference.output, model, taxonomy, plan, self.geo, place)
        result = self.interpret(model, inference.output, top_k, plan, steered)
        timings = Timings(
            fetch_ms=photo.fetch_ms,
            decode_ms=inference.decode_ms,
            infer_ms=inference.infer_ms,
            total_ms=(time.perf_counter() - started) * 1000 + (photo.fetch_ms or 0.0),
        )
        return replace(result, photo=photo, image=inference.image, timings=timings)

    def interpret(
        self,
        model: LoadedModel,
        probabilities: npt.NDArray[np.float32],
        top_k: int | None = None,
        plan: Plan | None = None,
        steered: Steered | None = None,
    ) -> Identification:
        """Probabilities -> the answer: top-k species with their taxa, no-match and its reason,
        and the rollup when no species is confident. ``steered``: the filters and the place
        already applied (``identify``); without it, the plan's filters alone are."""
        plan = plan or self.plan(model)
        if steered is None:
            steered = narrow_now(probabilities, model, plan)
        background = model.spec.background_index
        scores = steered.scores
        ranking = rank(
            probabilities,
            top_k=top_k or self.ranking.top_k_default,
            background_index=background,
            min_score=plan.min_score,
            scores=scores,
            keep=steered.keep,
        )
        taxonomy = self.taxonomies.get(model.taxonomy_path)
        labels = model.labels
        geo, factors = steered.geo, steered.geo.factors()
        species = [
            SpeciesHit(
                position,
                index,
                labels[index],
                score,
                taxonomy.get(labels[index].scientific_name),
                vision_score=min(float(steered.vision[index]), 1.0),
                geo_score=float(factors[index]) if factors is not None else None,
                geo_records=int(geo.records[index])
                if factors is not None and geo.records is not None
                else None,
            )
            for position, (index, score) in enumerate(zip(ranking.indices, ranking.scores, strict=True), 1)
        ]
        # Climb the taxonomy only when no species is confident; over every class, not just top_k
        # (the classes with a score at all: most of the AIY models' 1000-2000 are exactly 0).
        summed = answer_rollup(steered, model, taxonomy, plan.rollup_threshold, plan.taxon)
        return Identification(
            model,
            species,
            ranking.no_match_reason,
            ranking.background_score,
            summed,
            filters=report(plan, model.name, steered),
            geo=geo,
            min_score=plan.min_score,
            rollup_threshold=plan.rollup_threshold,
        )

    def identify_files(
        self,
        model: LoadedModel,
        paths: list[Path],
        *,
        top_k: int | None = None,
        workers: int,
        on_progress: Callable[[int], None] | None = None,
        plan: Plan | None = None,
    ) -> FileIdentifications:
        """Photos on disk, batched over ``workers`` threads; unreadable ones listed, not fatal.
        Blocking: the CLI calls it directly."""
        inferred = infer_files(
            model, paths, max_pixels=self.max_pixels, workers=workers, on_progress=on_progress
        )
        plan = plan or self.plan(model)  # once for the folder, not once per photo
        results = [
            self.interpret(model, row, top_k, plan) if ok else None
            for row, ok in zip(inferred.outputs, inferred.ok, strict=True)
        ]
        return FileIdentifications(paths, results, inferred.failures, inferred.outputs)
