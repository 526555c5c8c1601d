"""Fixtures and helpers for test_service_identify.py (each fixture is ``NAME_fixture``, registered
as ``NAME`` where the test module imports it): every labelled photo once through
``Identifier.identify`` with the shipped calibrations (``in_sample``), the folds of the held-out
study with their calibrations (``fold_calibrations``), the service's own decision on a photo's
measured signals under other calibrations (``decide``), and the figures' arithmetic. The models,
photos and signals are tests/services/conftest_observation.py's."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import pytest

from app.identification.answer import Answer
from app.identification.request import Request
from app.identification.service import Identifier
from app.identification.steer import GeoOutcome, steer_now
from app.models.registry import LoadedModel, Registry
from app.models.runner import InferenceRunner
from app.models.scope import Calibration, ModelScope
from app.services.calibration import FLOOR, fit_temperature, scope_scores
from tests.services.conftest_observation import (
    BIRDS_MODEL,
    INSECTS_MODEL,
    Signals,
    file_photo,
    in_scope_for,
    make_service,
    models_of,
    species_index,
)
from tests.support.datasets import Labelled

T = TypeVar("T")
EXPECTED_MODEL = {"birds": BIRDS_MODEL, "insects": INSECTS_MODEL}  # groups that have a model
FOLDS = 5
ACCEPTANCE = 0.95


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


# --- the service ------------------------------------------------------------------------------


async def bounded(jobs: Iterable[Callable[[], Awaitable[T]]], limit: int) -> list[T]:
    """Awaits the jobs with at most ``limit`` at once (the runner refuses beyond its queue)."""
    gate = asyncio.Semaphore(limit)

    async def one(job: Callable[[], Awaitable[T]]) -> T:
        async with gate:
            return await job()

    return await asyncio.gather(*(one(job) for job in jobs))


def identify_all(service: Identifier, observations: list[list[Path]], limit: int = 3) -> list[Answer]:
    """Each list of paths as one observation (POST /v1/identify's request) through
    ``Identifier.identify``."""

    def job(paths: list[Path]) -> Callable[[], Awaitable[Answer]]:
        return lambda: service.identify(Request([file_photo(p) for p in paths]))

    return asyncio.run(bounded((job(paths) for paths in observations), limit))


@pytest.fixture(scope="session", name="in_sample")
def in_sample_fixture(
    observation_registry: Registry, runner: InferenceRunner, labelled: list[Labelled]
) -> list[Answer]:
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
    """What the service answers for one photo under given calibrations, from its signals."""

    chosen: str
    accepted: bool
    answer: Answer  # without photos and timings


def decide(service: Identifier, calibrations: dict[str, Calibration], found: dict[str, Signals]) -> Simulated:
    """The service's own judging (per model verdicts, routing) and conclusion (decision, answer)
    on one photo's measured outputs, the plan's models given ``calibrations`` in place of the
    shipped ones: no new inference per fold. What ``Identifier.identify`` does after the run,
    without a place."""
    plan = service.plan()
    models = []
    for model in plan.models:
        assert model.scope is not None
        scope = ModelScope(
            calibrations[model.name], model.scope.weights, background_index=model.spec.background_index
        )
        models.append(replace(model, scope=scope))
    plan = replace(plan, models=models)
    assessed = {m.name: m.scope.assess(found[m.name].probabilities, found[m.name].features) for m in models}
    verdicts, chosen, why = service.judge([assessed], plan, "calibrated")
    steered = steer_now(chosen.probabilities, chosen.model, plan) if chosen.accepted else None
    geo = steered.geo if steered is not None else GeoOutcome.not_requested(False)
    answer = service.conclude(verdicts, chosen, why, plan, "calibrated", None, steered, geo)
    return Simulated(chosen.model.name, chosen.accepted, answer)


# --- figures ----------------------------------------------------------------------------------


def rate(hits: int | np.integer, total: int) -> str:
    return f"{hits / total:.3f} ({int(hits)}/{total})" if total else "n/a (0/0)"


def auroc(positives: npt.ArrayLike, negatives: npt.ArrayLike) -> float:
    """Probability that an in-scope photo scores above an out-of-scope one (ties count half)."""
    pos, neg = np.asarray(positives, np.float64), np.asarray(negatives, np.float64)
    greater = (pos[:, None] > neg[None, :]).sum()
    ties = (pos[:, None] == neg[None, :]).sum()
    return float((greater + 0.5 * ties) / (len(pos) * len(neg)))
