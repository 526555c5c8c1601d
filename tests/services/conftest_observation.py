"""Fixtures and helpers for the observation and calibration tests (test_observation.py and
test_calibration.py import them; each fixture is ``NAME_fixture``, registered as ``NAME``): the
real birds and insects models with their scope tensors and the shipped calibrations, every
labelled real photo run once through them (raw probabilities, features, the class-cosine
signal), the same photos once through ObservationService.identify with the shipped calibrations,
and the folds of the held-out study.

Everything here is session-wide: each photo is decoded and inferred a bounded number of times."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from app.enrich.taxonomies import TaxonomyBook
from app.imaging.decode import decode_for
from app.imaging.photo import Photo
from app.models.manifest import load_manifest
from app.models.registry import LoadedModel, Registry, open_registry
from app.models.runner import InferenceRunner
from app.models.scope import Calibration, ModelScope
from app.services.calibration import FLOOR, fit_temperature, scope_scores
from app.services.decision import Decision
from app.services.decision import decide as service_decide
from app.services.observation import Observation, ObservationAnswer, ObservationService
from app.services.verdicts import route, verdict
from app.settings import ModelSettings, RankingSettings
from tests.services.helpers import MAX_PIXELS
from tests.support.datasets import Labelled, photos
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, with_scope, write_manifest
from tests.support.server import REPO
from tests.support.shared import SHARED

T = TypeVar("T")
SHIPPED_MANIFEST = REPO / "volumes" / "models" / "models.toml"
BIRDS_MODEL, INSECTS_MODEL = BIRDS[0], INSECTS[0]
EXPECTED_MODEL = {"birds": BIRDS_MODEL, "insects": INSECTS_MODEL}  # groups that have a model
FOLDS = 5
ACCEPTANCE = 0.95
MIN_SCORE = 0.1


# --- manifests --------------------------------------------------------------------------------


def shipped_entry(
    model: tuple[str, str, int, str], *, calibration: Path | str | None = "shipped"
) -> dict[str, Any]:
    """``aiy_entry`` plus what volumes/models/models.toml declares for /v1/identify (sha256,
    features and class-weights tensors) and, by default, the shipped calibration file."""
    spec = next(m for m in load_manifest(SHIPPED_MANIFEST).models if m.name == model[0])
    return with_scope(aiy_entry(*model) | {"sha256": spec.sha256}, calibration=calibration)


def shipped_calibration_path(model: str) -> Path:
    spec = next(m for m in load_manifest(SHIPPED_MANIFEST).models if m.name == model)
    assert spec.calibration is not None
    return SHIPPED_MANIFEST.parent / spec.calibration


@pytest.fixture(scope="session", name="observation_registry")
def observation_registry_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """The birds and insects models as /v1/identify serves them: scope tensors + shipped
    calibrations."""
    folder = tmp_path_factory.mktemp("observation")
    manifest = write_manifest(folder / "models.toml", [shipped_entry(BIRDS), shipped_entry(INSECTS)])
    registry = open_registry(ModelSettings(manifest=manifest, inference_workers=2))
    for model in registry.entries():
        assert model.state == "ready", (model.name, model.reason)
        assert model.scope is not None and model.scope.signal == "class_cosine", model.name
    yield registry
    registry.close()


def make_service(registry: Registry, runner: InferenceRunner) -> ObservationService:
    return ObservationService(
        registry,
        runner,
        TaxonomyBook(),
        RankingSettings(min_score=MIN_SCORE),
        max_pixels=MAX_PIXELS,
        geo=None,
    )


# --- the labelled photos ----------------------------------------------------------------------


def photo_set(row: Labelled) -> str:
    """The set a photo is reported under."""
    if row.source == "samples":
        return {"birds": "samples/birds", "insects": "samples/dragonfly", "plants": "samples/sunflower"}[
            row.group
        ]
    if row.source == "skimage":
        return "skimage/other"
    return "leeds" if row.source == "leeds" else f"mixed/{row.group}"


def is_out_of_scope(row: Labelled) -> bool:
    """For every model: plants and photos of no organism."""
    return row.group in ("plants", "other")


@pytest.fixture(scope="session", name="labelled")
def labelled_fixture() -> list[Labelled]:
    rows = photos(SHARED)
    assert len(rows) == 439, len(rows)  # Leeds 300, mixed 120, samples 4, scikit-image 15
    return rows


# --- every photo once through the models (no service) -----------------------------------------


@dataclass(frozen=True)
class Signals:
    """One photo through one model, uncalibrated."""

    probabilities: npt.NDArray[np.float32]  # [C] the model's own (q/256)
    features: npt.NDArray[np.float32]  # [F] pre-logits
    top: int  # best species, never the background class
    cosine: float  # the class_cosine scope signal
    background: float


def models_of(registry: Registry) -> dict[str, LoadedModel]:
    return {m.name: m for m in registry.entries() if m.spec.task == "classifier"}


def spec_key(model: LoadedModel) -> tuple[object, ...]:
    spec = model.input_spec
    return (spec.size, spec.dtype, spec.range)


@pytest.fixture(scope="session", name="signals")
def signals_fixture(observation_registry: Registry, labelled: list[Labelled]) -> list[dict[str, Signals]]:
    """Per photo (the order of ``labelled``), per model: what the model makes of it, decoded as
    the service decodes (``decode_for``)."""
    models = models_of(observation_registry)

    def one(row: Labelled) -> dict[str, Signals]:
        specs = {spec_key(m): m.input_spec for m in models.values()}
        images = decode_for(row.path.read_bytes(), list(specs.values()), max_pixels=MAX_PIXELS)
        decoded = dict(zip(specs, images, strict=True))
        out = {}
        for name, model in models.items():
            assert model.scope is not None
            probabilities, features = model.predict_with_features(decoded[spec_key(model)].pixels[np.newaxis])
            assert features is not None
            plain = ModelScope(None, model.scope.weights, background_index=model.spec.background_index)
            top = plain.assess(probabilities[0], None).top
            background = float(probabilities[0][model.spec.background_index])
            cosine = plain.class_cosine(features[0], top)
            out[name] = Signals(probabilities[0], features[0], top, cosine, background)
        return out

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(one, labelled))


# --- the service ------------------------------------------------------------------------------


async def bounded(jobs: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Awaits the jobs with at most ``limit`` at once (the runner refuses beyond its queue)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


def file_photo(path: Path) -> Photo:
    return Photo(path.read_bytes(), "file", name=path.name)


def identify_all(
    service: ObservationService, observations: list[list[Path]], limit: int = 3
) -> list[ObservationAnswer]:
    """Each list of paths as one observation through ``ObservationService.identify``."""

    def job(paths: list[Path]) -> Callable[[], Awaitable[ObservationAnswer]]:
        return lambda: service.identify(Observation([file_photo(p) for p in paths]))

    return asyncio.run(bounded((job(paths) for paths in observations), limit))


@pytest.fixture(scope="session", name="in_sample")
def in_sample_fixture(
    observation_registry: Registry, runner: InferenceRunner, labelled: list[Labelled]
) -> list[ObservationAnswer]:
    """Every labelled photo alone through ``identify``, with the shipped calibrations."""
    return identify_all(make_service(observation_registry, runner), [[row.path] for row in labelled], limit=6)


# --- folds and per-fold calibrations (the rule of services.calibration.fit) --------------------


def folds_of(labelled: list[Labelled]) -> npt.NDArray[np.int64]:
    """A fold per photo. Leeds: by species, two species per fold (sorted names), so a held-out
    photo's species was never fitted on; the dragonfly is fold 0; birds (about one photo per
    species): a random permutation, seed 0; every other photo (never fitted on): seed 1."""
    fold = np.full(len(labelled), -1, np.int64)
    species = sorted({r.name for r in labelled if r.source == "leeds"})
    for i, row in enumerate(labelled):
        if row.source == "leeds":
            fold[i] = species.index(row.name) // 2
        elif row.source == "samples" and row.group == "insects":
            fold[i] = 0
    for group, seed in (("birds", 0), ("rest", 1)):
        members = [
            i for i, r in enumerate(labelled) if fold[i] < 0 and ((r.group == "birds") == (group == "birds"))
        ]
        order = np.random.default_rng(seed).permutation(len(members))
        for position, k in enumerate(order):
            fold[members[k]] = position % FOLDS
    assert (fold >= 0).all()
    return fold


def in_scope_for(model: str, labelled: list[Labelled]) -> npt.NDArray[np.bool_]:
    """The model's own group's photos of species it knows (what the shipped calibration fits on)."""
    group = "birds" if model == BIRDS_MODEL else "insects"
    return np.array([r.group == group and r.known for r in labelled])


def species_index(model: LoadedModel) -> dict[str, int]:
    return {label.scientific_name.lower(): i for i, label in enumerate(model.labels)}


def fit_calibration(
    model: LoadedModel, rows: list[Labelled], found: list[Signals], *, fitted_on: str
) -> Calibration:
    """``services.calibration.fit``'s rule on signals already measured (its ``scope_scores`` and
    ``fit_temperature``): the temperature by NLL on the photos' own species, the threshold at the
    lower (1 - acceptance) quantile of their scope signal."""
    outputs = np.stack([s.probabilities for s in found])
    signal, scores = scope_scores(model, outputs, np.stack([s.features for s in found]))
    assert signal == "class_cosine"
    threshold = float(np.quantile(scores, 1.0 - ACCEPTANCE, method="lower"))
    index = species_index(model)
    truth = np.array([index[r.name.lower()] for r in rows], np.int64)
    temperature = fit_temperature(outputs, truth)
    return Calibration(
        model=model.name,
        sha256=model.sha256,
        temperature=temperature,
        probability_floor=FLOOR,
        scope_signal="class_cosine",
        scope_threshold=threshold,
        acceptance=ACCEPTANCE,
        fitted_on=fitted_on,
        photos=len(rows),
        photos_in_model=len(rows),
        figures={"acceptance_fitted": float(np.mean(scores >= threshold))},
    )


@dataclass(frozen=True)
class FoldCalibrations:
    fold: npt.NDArray[np.int64]  # per photo
    calibrations: list[dict[str, Calibration]]  # per fold k: fitted without fold k


@pytest.fixture(scope="session", name="fold_calibrations")
def fold_calibrations_fixture(
    observation_registry: Registry, labelled: list[Labelled], signals: list[dict[str, Signals]]
) -> FoldCalibrations:
    models = models_of(observation_registry)
    fold = folds_of(labelled)
    per_fold: list[dict[str, Calibration]] = []
    for k in range(FOLDS):
        fitted = {}
        for name, model in models.items():
            rows = np.flatnonzero(in_scope_for(name, labelled) & (fold != k))
            fitted[name] = fit_calibration(
                model,
                [labelled[i] for i in rows],
                [signals[i][name] for i in rows],
                fitted_on=f"folds != {k}",
            )
        per_fold.append(fitted)
    return FoldCalibrations(fold, per_fold)


@dataclass(frozen=True)
class Simulated:
    """What the service decides for one photo under given calibrations, from its signals."""

    chosen: str
    accepted: bool
    decision: Decision


def decide(
    service: ObservationService, calibrations: dict[str, Calibration], found: dict[str, Signals]
) -> Simulated:
    """The service's own verdict, routing and decision (``verdicts.verdict``, ``verdicts.route``,
    ``decision.decide``) on one photo's measured outputs, with ``calibrations`` in
    place of the shipped ones: no new inference per fold."""
    verdicts = []
    for model in models_of(service.registry).values():
        assert model.scope is not None
        scope = ModelScope(
            calibrations[model.name], model.scope.weights, background_index=model.spec.background_index
        )
        s = found[model.name]
        assessment = scope.assess(s.probabilities, s.features)
        verdicts.append(verdict(replace(model, scope=scope), [assessment], service.ranking.min_score))
    chosen, _ = route(verdicts)
    decision = service_decide(
        chosen, verdicts, service.plan(None), service.taxonomies, service.ranking.top_k_default
    )
    return Simulated(chosen.model.name, chosen.accepted, decision)


# --- figures ----------------------------------------------------------------------------------


def rate(hits: int | np.integer, total: int) -> str:
    return f"{hits / total:.3f} ({int(hits)}/{total})" if total else "n/a (0/0)"


def auroc(positives: npt.ArrayLike, negatives: npt.ArrayLike) -> float:
    """Probability that an in-scope photo scores above an out-of-scope one (ties count half)."""
    pos, neg = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
