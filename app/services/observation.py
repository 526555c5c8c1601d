"""Identify an observation: 1 to 5 photos of one organism, every ready classifier at once, where
and when, and an honest "I don't know".

Per photo, one worker-thread job decodes it once (``decode_for``: one decode, resized for each
model's input) and runs every model on it, keeping each model's calibrated probabilities and
its scope signal (``app.models.scope``). Then, per model, the photos are combined; the model
whose scope fits best is chosen; the geo prior re-ranks its species; the answer is its species,
or a reason why there is none:

- photos are combined per model by the mean of their log-probabilities (a product of experts:
  a species must fit every photo), renormalised; the scope signal is the photos' mean;
- the chosen model is the one with the highest scope signal (compared as margins over their
  thresholds when the models use different signals), and it is *accepted* when its signal
  reaches its threshold;
- not accepted -> ``not_an_organism`` when every model's background class holds at least half
  the probability, else ``out_of_scope`` (no model covers what the photos show), and no species;
- accepted, best species under MIN_SCORE -> ``low_confidence``, with the best guesses and the
  rollup (the deepest taxon whose summed probability reaches ROLLUP_THRESHOLD).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from dataclasses import dataclass, replace
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.core import InputSpec, Label
from app.enrich.taxonomies import TaxonomyBook
from app.enrich.taxonomy import Rollup, Taxon, rollup
from app.errors import BadRequest, ModelUnavailable, ServiceError
from app.imaging.decode import DecodedImage, decode_for
from app.imaging.photo import Photo
from app.models.registry import LoadedModel, Registry
from app.models.runner import InferenceRunner
from app.models.scope import Assessment, ScopeSignal
from app.services.geo import GeoOutcome, GeoWeighting
from app.services.identify import InferenceObserver, Timings
from app.settings import RankingSettings

MAX_PHOTOS = 5
NOT_AN_ORGANISM_BACKGROUND = 0.5  # every model's background class at least this: no organism
ObservationNoMatch = Literal["not_an_organism", "out_of_scope", "low_confidence"]
Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Observation:
    photos: list[Photo]
    lat: float | None = None
    lon: float | None = None
    date: dt.date | None = None
    groups: frozenset[str] | None = None  # restrict to the models of these groups
    top_k: int | None = None


@dataclass(frozen=True)
class PhotoRun:
    """One photo, decoded once, through every model."""

    image: DecodedImage  # the first model's input (pixels), with the photo's format and size
    assessments: dict[str, Assessment]  # model name -> what it made of the photo
    decode_ms: float
    infer_ms: dict[str, float]


@dataclass(frozen=True)
class ModelVerdict:
    model: LoadedModel
    signal: ScopeSignal
    scope: float  # the photos' mean scope signal
    threshold: float
    accepted: bool
    background: float | None  # mean background probability over the photos
    probabilities: Array  # [C] the photos combined (calibrated; geo-weighted when applied)
    per_photo: Array  # [P, C] calibrated, per photo
    top: int  # its best species in ``probabilities``


@dataclass(frozen=True)
class ObservedSpecies:
    rank: int
    model: str
    group: str | None
    index: int
    label: Label
    score: float  # the observation's calibrated probability (after the geo prior when applied)
    vision_score: float  # before the geo prior
    per_photo: list[float]  # each photo's calibrated probability for this species
    taxon: Taxon | None
    geo_weight: float | None  # the prior's factor; None without a prior
    geo_records: int | None  # GBIF occurrences of the species in the cell


@dataclass(frozen=True)
class Decision:
    species: list[ObservedSpecies]
    no_match_reason: ObservationNoMatch | None
    rollup: Rollup | None


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

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None


def _spec_key(spec: InputSpec) -> tuple[object, ...]:
    return (spec.size, spec.dtype, spec.range)


def combine(per_photo: Array) -> Array:
    """Photos -> one distribution: the mean of log-probabilities, renormalised."""
    logs = np.log(np.maximum(per_photo.astype(np.float64), 1e-12)).mean(axis=0)
    logs -= logs.max()
    exp = np.exp(logs)
    return np.asarray(exp / exp.sum(), dtype=np.float32)


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
        observer: InferenceObserver | None = None,
    ) -> None:
        self.registry, self.runner, self.taxonomies = registry, runner, taxonomies
        self.ranking, self.max_pixels, self.geo, self.observer = ranking, max_pixels, geo, observer

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

    async def identify(self, observation: Observation) -> ObservationAnswer:
        started = time.perf_counter()
        models = self.models_for(observation.groups)
        photos = observation.photos
        runs = await asyncio.gather(
            *(self.runner.run(self._run_photo, n, photo, models) for n, photo in enumerate(photos, 1))
        )
        for photo, run in zip(photos, runs, strict=True):
            self._observe(photo, run)
        verdicts = [self._verdict(model, [run.assessments[model.name] for run in runs]) for model in models]
        chosen, why = route(verdicts)
        chosen, geo = await self._geo(chosen, observation)
        decision = self._decide(chosen, verdicts, geo, observation.top_k)
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
        )

    async def _geo(self, chosen: ModelVerdict, observation: Observation) -> tuple[ModelVerdict, GeoOutcome]:
        """The seen-nearby prior on the chosen model's species, when a place is given."""
        lat, lon = observation.lat, observation.lon
        if not chosen.accepted or self.geo is None or lat is None or lon is None:
            return chosen, GeoOutcome.not_requested(lat is not None and lon is not None)
        month = observation.date.month if observation.date is not None else None
        model = chosen.model
        taxonomy = self.taxonomies.get(model.taxonomy_path)
        weighted, outcome = await self.geo.apply(
            chosen.probabilities, model.labels, taxonomy, lat, lon, month
        )
        top = top_species(weighted, model.spec.background_index)
        return replace(chosen, probabilities=weighted, top=top), outcome

    def _run_photo(self, number: int, photo: Photo, models: list[LoadedModel]) -> PhotoRun:
        """Worker thread: one decode for every model's input, then every model."""
        specs = {_spec_key(m.input_spec): m.input_spec for m in models}
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
        return PhotoRun(decoded[0], assessments, decode_ms, infer_ms)

    def _observe(self, photo: Photo, run: PhotoRun) -> None:
        if self.observer is None:
            return
        self.observer.observe_shared(run.decode_ms, run.infer_ms)
        if photo.fetch_ms is not None:
            self.observer.observe_fetch(photo.fetch_ms, len(photo.data))

    def _verdict(self, model: LoadedModel, assessments: list[Assessment]) -> ModelVerdict:
        assert model.scope is not None
        per_photo = np.stack([a.probabilities for a in assessments])
        combined = combine(per_photo)
        scope = float(np.mean([a.scope for a in assessments]))
        threshold = model.scope.threshold if model.scope.threshold is not None else self.ranking.min_score
        backgrounds = [a.background for a in assessments if a.background is not None]
        return ModelVerdict(
            model=model,
            signal=model.scope.signal,
            scope=scope,
            threshold=threshold,
            accepted=scope >= threshold,
            background=float(np.mean(backgrounds)) if backgrounds else None,
            probabilities=combined,
            per_photo=per_photo,
            top=top_species(combined, model.spec.background_index),
        )

    def _decide(
        self, chosen: ModelVerdict, verdicts: list[ModelVerdict], geo: GeoOutcome, top_k: int | None
    ) -> Decision:
        if not chosen.accepted:
            organism = any(
                v.background is None or v.background < NOT_AN_ORGANISM_BACKGROUND for v in verdicts
            )
            return Decision([], "out_of_scope" if organism else "not_an_organism", None)
        model, background = chosen.model, chosen.model.spec.background_index
        taxonomy = self.taxonomies.get(model.taxonomy_path)
        species_scores = chosen.probabilities.copy()
        if background is not None:
            species_scores[background] = -1.0
        order = np.argsort(-species_scores, kind="stable")[: top_k or self.ranking.top_k_default]
        vision = geo.vision if geo.vision is not None else chosen.probabilities
        species = [
            ObservedSpecies(
                rank=rank,
                model=model.name,
                group=model.spec.group,
                index=int(i),
                label=model.labels[i],
                score=float(chosen.probabilities[i]),
                vision_score=float(vision[i]),
                per_photo=[float(p) for p in chosen.per_photo[:, i]],
                taxon=taxonomy.get(model.labels[i].scientific_name),
                geo_weight=float(geo.weights[i]) if geo.weights is not None else None,
                geo_records=int(geo.records[i]) if geo.records is not None else None,
            )
            for rank, i in enumerate(order, 1)
        ]
        confident = species[0].score >= self.ranking.min_score
        summed = rollup(
            (
                (model.labels[i].scientific_name, float(chosen.probabilities[i]))
                for i in np.flatnonzero(chosen.probabilities > 1e-4)
                if i != background
            ),
            taxonomy,
            self.ranking.rollup_threshold,
        )
        return Decision(species, None if confident else "low_confidence", summed)


def top_species(probabilities: Array, background_index: int | None) -> int:
    scores = probabilities.copy()
    if background_index is not None:
        scores[background_index] = -1.0
    return int(np.argmax(scores))


def route(verdicts: list[ModelVerdict]) -> tuple[ModelVerdict, str]:
    """The model whose scope fits the photos best, and why, in words."""
    same_signal = len({v.signal for v in verdicts}) == 1
    chosen = max(verdicts, key=(lambda v: v.scope) if same_signal else (lambda v: v.scope - v.threshold))
    others = ", ".join(f"{v.model.name} {v.scope:.3f}" for v in verdicts if v is not chosen)
    relation = ">=" if chosen.accepted else "<"
    fit = f"{chosen.signal} {chosen.scope:.3f} {relation} its threshold {chosen.threshold:.3f}"
    why = f"{chosen.model.name} fits best ({fit})" + (f"; others: {others}" if others else "")
    return chosen, why
