"""Identify an observation: 1 to 5 photos of one organism, every ready classifier at once (and
the species index when one is served), where and when, and an honest "I don't know".

Per photo, one worker-thread job decodes it once (``decode_for``) and runs every model on it,
keeping each model's calibrated probabilities and scope signal (``app.models.scope``). Per model
the photos are combined and the best-fitting model is chosen (``verdicts``); the geo prior
re-ranks its species (``geo``). Not accepted -> ``not_an_organism`` when every model's
background class holds at least half the probability, else ``out_of_scope``, and no species;
accepted with its best species under MIN_SCORE -> ``low_confidence``, guesses and the rollup.

A request may steer it (``steering``): a taxon or a species list keeps some of each model's
species (a model with none kept is not asked), ``geo`` switches the place off or makes it a
filter, and ``min_score``/``rollup_threshold`` replace the settings. The scope decision is the
model's own, on all its species: a filter narrows what is named, not whether the photos show
something the model knows.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from app.core import InputSpec
from app.enrich.taxonomies import TaxonomyBook
from app.enrich.taxonomy import Rollup
from app.errors import BadRequest, IndexUnavailable, ModelUnavailable, ServiceError
from app.imaging.decode import DecodedImage, decode_for
from app.imaging.photo import Photo
from app.index.artifacts import SpeciesIndex
from app.index.vote import merge
from app.models.registry import LoadedModel, Registry
from app.models.runner import InferenceRunner
from app.models.scope import Assessment
from app.services.decision import ObservationNoMatch, ObservedSpecies, decide
from app.services.geo import GeoOutcome, GeoWeighting, Place
from app.services.identify import InferenceObserver, Timings
from app.services.lookup import Lookup, LookupAnswer
from app.services.steered import FilterReport, Steered, report, steer
from app.services.steering import Plan, Steering, plan_for
from app.services.verdicts import ModelVerdict, route, verdict
from app.settings import RankingSettings

MAX_PHOTOS = 5
Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Observation:
    photos: list[Photo]
    lat: float | None = None
    lon: float | None = None
    date: dt.date | None = None
    groups: frozenset[str] | None = None  # restrict to the models of these groups
    top_k: int | None = None
    steering: Steering = field(default_factory=Steering)

    @property
    def place(self) -> Place | None:
        return Place(self.lat, self.lon, self.date) if self.lat is not None and self.lon is not None else None


@dataclass(frozen=True)
class PhotoRun:
    """One photo, decoded once, through every model."""

    image: DecodedImage  # the first model's input (pixels), with the photo's format and size
    assessments: dict[str, Assessment]  # model name -> what it made of the photo
    decode_ms: float
    infer_ms: dict[str, float]
    index_features: Array | None = None  # the species index's embedder, when an index is served


@dataclass(frozen=True)
class ObservationAnswer:
    species: list[ObservedSpecies]
    chosen: ModelVerdict | None
    verdicts: list[ModelVerdict]
    why: str
    no_match_reason: ObservationNoMatch | None
    rollup: Rollup | None
    geo: GeoOutcome
    photos: list[tuple[Photo, DecodedImage]]
    timings: Timings
    index: LookupAnswer | None = None  # what the species index says, when one is served
    filters: FilterReport | None = None  # what the taxon/list filters kept; None without
    min_score: float | None = None  # the thresholds this answer used
    rollup_threshold: float | None = None

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None


def _spec_key(spec: InputSpec) -> tuple[object, ...]:
    return (spec.size, spec.dtype, spec.range)


class ObservationService:
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

    def models_for(self, groups: frozenset[str] | None) -> list[LoadedModel]:
        """Every ready classifier (of ``groups``, when given)."""
        classifiers = [m for m in self.registry.entries() if m.spec.task == "classifier"]
        if groups is not None:
            known = {m.spec.group for m in classifiers if m.spec.group}
            unknown = sorted(groups - known)
            if unknown:
                raise BadRequest(
                    f"no model serves the group(s) {unknown}: choose from {sorted(known)}",
                    detail={"unknown": unknown, "groups": sorted(known)},
                )
            classifiers = [m for m in classifiers if m.spec.group in groups]
        ready = [m for m in classifiers if m.state == "ready" and m.scope is not None]
        if not ready:
            raise ModelUnavailable(
                "no classifier is ready to identify the photos",
                detail={"models": {m.spec.name: m.state for m in classifiers}},
                headers={"Retry-After": "5"},
            )
        return ready

    def plan(self, groups: frozenset[str] | None, steering: Steering | None = None) -> Plan:
        """The models to ask and what the filters keep of each: the route calls it before any
        download, so an unknown group or taxon, or a list no model has, costs nothing."""
        return plan_for(self.models_for(groups), self.taxonomies, steering or Steering(), self.ranking)

    async def identify(self, observation: Observation, plan: Plan | None = None) -> ObservationAnswer:
        started = time.perf_counter()
        plan = plan or self.plan(observation.groups, observation.steering)
        models = plan.models
        photos = observation.photos
        indexed = await self._index()
        embedder = indexed[1] if indexed is not None else None
        runs = await asyncio.gather(
            *(self.runner.run(self._run_photo, n, p, models, embedder) for n, p in enumerate(photos, 1))
        )
        for photo, run in zip(photos, runs, strict=True):
            self._observe(photo, run)
        verdicts = [
            verdict(model, [run.assessments[model.name] for run in runs], plan.min_score) for model in models
        ]
        chosen, why = route(verdicts)
        steered = await self._steer(chosen, observation, plan)
        geo = steered.geo if steered is not None else GeoOutcome.not_requested(observation.place is not None)
        if plan.steering.geo == "off" and steered is None:
            geo = GeoOutcome.off()
        top_k = observation.top_k or self.ranking.top_k_default
        decision = decide(chosen, verdicts, plan, self.taxonomies, top_k, steered)
        fetches = [p.fetch_ms for p in photos if p.fetch_ms is not None]
        timings = Timings(
            fetch_ms=max(fetches) if fetches else None,  # fetched concurrently
            decode_ms=sum(run.decode_ms for run in runs),
            infer_ms=sum(sum(run.infer_ms.values()) for run in runs),
            total_ms=(time.perf_counter() - started) * 1000 + (max(fetches) if fetches else 0.0),
        )
        return ObservationAnswer(
            species=decision.species,
            chosen=chosen,
            verdicts=verdicts,
            why=why,
            no_match_reason=decision.no_match_reason,
            rollup=decision.rollup,
            geo=geo,
            photos=[(photo, run.image) for photo, run in zip(photos, runs, strict=True)],
            timings=timings,
            index=await self._look_up(indexed, runs, observation.top_k),
            filters=report(plan, chosen.model.name if chosen.accepted else None, steered),
            min_score=plan.min_score,
            rollup_threshold=plan.rollup_threshold,
        )

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
        features = np.stack([run.index_features for run in runs if run.index_features is not None])
        per_photo = await self.runner.run(self.lookup.votes, indexed[0], features)
        return self.lookup.interpret(indexed[0], merge(per_photo), top_k)

    async def _steer(self, chosen: ModelVerdict, observation: Observation, plan: Plan) -> Steered | None:
        """The filters and the place on the chosen model's species; None when no model accepted
        the photos (there are no species to steer)."""
        if not chosen.accepted:
            return None
        model = chosen.model
        taxonomy = self.taxonomies.get(model.taxonomy_path)
        return await steer(chosen.probabilities, model, taxonomy, plan, self.geo, observation.place)

    def _run_photo(
        self, number: int, photo: Photo, models: list[LoadedModel], embedder: LoadedModel | None
    ) -> PhotoRun:
        """Worker thread: one decode for every model's input (and the index's embedder), then
        every model."""
        specs = {_spec_key(m.input_spec): m.input_spec for m in [*models, *([embedder] if embedder else [])]}
        started = time.perf_counter()
        try:
            decoded = decode_for(photo.data, list(specs.values()), max_pixels=self.max_pixels)
        except ServiceError as exc:
            name = f" ({photo.name})" if photo.name else ""
            exc.message = f"photo {number}{name}: {exc.message}"
            exc.detail = {**exc.detail, "photo": number}
            raise
        decode_ms = (time.perf_counter() - started) * 1000
        by_spec = dict(zip(specs, decoded, strict=True))
        assessments, infer_ms = {}, {}
        for model in models:
            started = time.perf_counter()
            pixels = by_spec[_spec_key(model.input_spec)].pixels[np.newaxis]
            probabilities, features = model.predict_with_features(pixels)
            assert model.scope is not None
            assessments[model.name] = model.scope.assess(
                probabilities[0], features[0] if features is not None else None
            )
            infer_ms[model.name] = (time.perf_counter() - started) * 1000
        features = None
        if embedder is not None:
            started = time.perf_counter()
            features = embedder.predict(by_spec[_spec_key(embedder.input_spec)].pixels[np.newaxis])[0]
            infer_ms[embedder.name] = (time.perf_counter() - started) * 1000
        return PhotoRun(decoded[0], assessments, decode_ms, infer_ms, features)

    def _observe(self, photo: Photo, run: PhotoRun) -> None:
        if self.observer is None:
            return
        self.observer.observe_shared(run.decode_ms, run.infer_ms)
        if photo.fetch_ms is not None:
            self.observer.observe_fetch(photo.fetch_ms, len(photo.data))
