"""Stage 6, the service: ``identify(request) -> Answer``, the one path under every way in.

    plan (before any download)  ->  run (decode once, each network once)  ->  judge (per model:
    the photos combined, its scope; the model to believe)  ->  steer (filters, place)  ->
    decide (rank, no-match reason, rollup)  ->  answer

A classifier endpoint's request is an identification of one photo by one named model, scored by
the model's own probabilities; /v1/identify asks every ready classifier (and the species index,
when one is served) for calibrated ones. ``identify_files`` is the same for photos on disk
(``classify FOLDER``, ``evaluate --model``): run in batches over worker threads, then judged,
steered (without a place) and decided as a request is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np

from app.enrich.taxonomies import TaxonomyBook
from app.errors import IndexUnavailable, ServiceError
from app.identification.answer import Answer, FileAnswers, Species, report
from app.identification.decide import ModelVerdict, calibrated_view, decide, route, verdict
from app.identification.lookup import Lookup, LookupAnswer
from app.identification.place import locate
from app.identification.plan import Plan, classifiers, plan_for
from app.identification.request import Request, ScoreKind, Steering
from app.identification.run import PhotoRun, run_photo
from app.identification.steer import GeoOutcome, GeoWeighting, Steered, steer, steer_now
from app.identification.timings import InferenceObserver, Timings
from app.imaging.photo import Photo
from app.index.artifacts import SpeciesIndex
from app.index.vote import merge
from app.models.inference import infer_files
from app.models.registry import LoadedModel, Registry
from app.models.runner import InferenceRunner
from app.models.scope import Assessment
from app.settings import RankingSettings


class Identifier:
    def __init__(
        self,
        registry: Registry,
        runner: InferenceRunner,
        taxonomies: TaxonomyBook,
        ranking: RankingSettings,
        *,
        max_pixels: int,
        geo: GeoWeighting | None = None,
        lookup: Lookup | None = None,
        observer: InferenceObserver | None = None,
    ) -> None:
        self.registry, self.runner, self.taxonomies = registry, runner, taxonomies
        self.ranking, self.max_pixels, self.geo, self.observer = ranking, max_pixels, geo, observer
        self.lookup = lookup

    def plan(
        self, model: str | None = None, groups: frozenset[str] | None = None, steering: Steering | None = None
    ) -> Plan:
        """The models to ask and what the filters keep of each: call it before any download, so
        an unknown model, group or taxon, or a list no model has, costs nothing."""
        return plan_for(
            classifiers(self.registry, model, groups), self.taxonomies, steering or Steering(), self.ranking
        )

    async def identify(self, request: Request, plan: Plan | None = None) -> Answer:
        started = time.perf_counter()
        plan = plan or self.plan(request.model, request.groups, request.steering)
        indexed = await self._index() if request.with_index else None
        embedder = indexed[1] if indexed is not None else None
        numbered = request.model is None  # an observation's photos are named by their number
        calibrated = request.scores == "calibrated"
        runs = await asyncio.gather(
            *(
                self._run(n, photo, plan.models, embedder, numbered, calibrated)
                for n, photo in enumerate(request.photos, 1)
            )
        )
        verdicts, chosen, why = self.judge([run.assessments for run in runs], plan, request.scores)
        where = locate(
            request.place,
            request.date,
            [run.image.metadata for run in runs],
            use_photos=request.use_photo_metadata,
            defaults=request.defaults,
        )
        place = where.place
        steered = None
        if chosen.accepted or request.scores == "model":  # the model's own answer lists its guesses
            taxonomy = self.taxonomies.get(chosen.model.taxonomy_path)
            weighed = calibrated_view(chosen) if request.scores == "model" and place is not None else None
            steered = await steer(
                chosen.probabilities, chosen.model, taxonomy, plan, self.geo, place, weighed
            )
        geo = steered.geo if steered is not None else GeoOutcome.not_requested(place is not None)
        if plan.steering.geo == "off" and steered is None:
            geo = GeoOutcome.off()
        answer = self.conclude(verdicts, chosen, why, plan, request.scores, request.top_k, steered, geo)
        fetches = [p.fetch_ms for p in request.photos if p.fetch_ms is not None]
        fetch_ms = max(fetches) if fetches else None  # fetched concurrently
        timings = Timings(
            fetch_ms=fetch_ms,
            decode_ms=sum(run.decode_ms for run in runs),
            infer_ms=sum(sum(run.infer_ms.values()) for run in runs),
            total_ms=(time.perf_counter() - started) * 1000 + (fetch_ms or 0.0),
        )
        return replace(
            answer,
            photos=[(run.photo, run.image) for run in runs],
            timings=timings,
            index=await self._look_up(indexed, runs, request.top_k),
            where=where,
        )

    @staticmethod
    def judge(
        photos: list[dict[str, Assessment]], plan: Plan, kind: ScoreKind
    ) -> tuple[list[ModelVerdict], ModelVerdict, str]:
        """Per model, the photos (each photo: model name -> its assessment) combined and its
        scope; the model to believe, and why."""
        verdicts = [
            verdict(model, [photo[model.name] for photo in photos], plan.min_score, kind)
            for model in plan.models
        ]
        chosen, why = route(verdicts)
        return verdicts, chosen, why

    def conclude(
        self,
        verdicts: list[ModelVerdict],
        chosen: ModelVerdict,
        why: str,
        plan: Plan,
        kind: ScoreKind,
        top_k: int | None,
        steered: Steered | None,
        geo: GeoOutcome,
    ) -> Answer:
        """The decision, as the one answer type (without photos and timings)."""
        model = chosen.model
        taxonomy = self.taxonomies.get(model.taxonomy_path)
        top_k = top_k or self.ranking.top_k_default
        decision = decide(chosen, verdicts, plan, taxonomy, top_k, steered, kind)
        factors = geo.factors()
        species = []
        if steered is not None:
            for rank, i in enumerate(decision.species, 1):
                species.append(
                    Species(
                        rank=rank,
                        model=model.name,
                        group=model.spec.group,
                        index=i,
                        label=model.labels[i],
                        score=min(float(steered.scores[i]), 1.0),
                        vision_score=min(float(steered.vision[i]), 1.0),
                        per_photo=[float(p) for p in chosen.per_photo[:, i]],
                        taxon=taxonomy.get(model.labels[i].scientific_name),
                        geo_weight=float(geo.weights[i]) if geo.weights is not None else None,
                        geo_records=int(geo.records[i]) if geo.records is not None else None,
                        geo_score=float(factors[i]) if factors is not None else None,
                    )
                )
        answering = model.name if chosen.accepted or kind == "model" else None
        return Answer(
            species=species,
            no_match_reason=decision.no_match_reason,
            rollup=decision.rollup,
            chosen=chosen,
            verdicts=verdicts,
            why=why,
            geo=geo,
            scores=kind,
            min_score=plan.min_score,
            rollup_threshold=plan.rollup_threshold,
            filters=report(plan, answering, steered),
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
    ) -> FileAnswers:
        """Photos on disk by one model, as its classifier endpoint answers them (the model's own
        scores, no place), batched over ``workers`` threads; unreadable ones listed, not fatal.
        Blocking: the CLI calls it directly."""
        plan = plan or plan_for([model], self.taxonomies, Steering(), self.ranking)  # once, not per photo
        inferred = infer_files(
            model, paths, max_pixels=self.max_pixels, workers=workers, on_progress=on_progress
        )
        assert model.scope is not None
        results: list[Answer | None] = []
        for row, ok in zip(inferred.outputs, inferred.ok, strict=True):
            if not ok:
                results.append(None)
                continue
            assessed = {model.name: model.scope.assess(row, None, calibrated=False)}
            verdicts, chosen, why = self.judge([assessed], plan, "model")
            steered = steer_now(chosen.probabilities, model, plan)
            results.append(self.conclude(verdicts, chosen, why, plan, "model", top_k, steered, steered.geo))
        return FileAnswers(paths, results, inferred.failures, inferred.outputs)

    async def _run(
        self,
        number: int,
        photo: Photo,
        models: list[LoadedModel],
        embedder: LoadedModel | None,
        numbered: bool,
        calibrated: bool,
    ) -> PhotoRun:
        try:
            return await run_photo(
                self.runner,
                photo,
                models,
                embedder,
                self.max_pixels,
                calibrated=calibrated,
                observer=self.observer,
            )
        except ServiceError as exc:
            if numbered and exc.status < 500:  # which photo of several is bad (not: overloaded)
                name = f" ({photo.name})" if photo.name else ""
                exc.message = f"photo {number}{name}: {exc.message}"
                exc.detail = {**exc.detail, "photo": number}
            raise

    async def _index(self) -> tuple[SpeciesIndex, LoadedModel] | None:
        if self.lookup is None:
            return None
        try:
            return await self.lookup.current()
        except IndexUnavailable:
            return None  # no index, or a refused one: the classifiers answer alone

    async def _look_up(
        self, indexed: tuple[SpeciesIndex, LoadedModel] | None, runs: list[PhotoRun], top_k: int | None
    ) -> LookupAnswer | None:
        if indexed is None or self.lookup is None:
            return None
        features = [run.index_features for run in runs if run.index_features is not None]
        if not features:
            return None
        per_photo = await self.runner.run(self.lookup.votes, indexed[0], np.stack(features))
        return self.lookup.interpret(indexed[0], merge(per_photo), top_k)
