"""Stage 2, run the models. In: the photos' bytes and the plan's models. Out: per photo, the
decoded image and what each model made of it (``Assessment``: its own probabilities, calibrated
ones where asked, the pre-logit features where the backend gives them, the scope signal), with
the time each took.

Each photo is decoded once, at the draft scale of the largest input asked for, and resized per
distinct input; each distinct network runs once. The species index's embedder is no second run
when it is a classifier's own pre-logits (``shares_network``: the same file, its output the
classifier's features tensor): one invoke gives the class probabilities and the features.
The work runs off the event loop: the decode and every plain model in one worker-thread job, a
model with a micro-batcher (SavedModels) in its batcher's thread, awaited without holding a
worker.

One model on one photo (/img_url, index writes) or on photos on disk (a folder, evaluate) is
``app.models.inference``: the same decode and the same model call.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

from app.identification.timings import InferenceObserver
from app.imaging.decode import DecodedImage, decode_for
from app.imaging.photo import Photo
from app.models.batcher import MicroBatcher
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner
from app.models.scope import Assessment

Array = npt.NDArray[np.float32]
Pixels = npt.NDArray[np.generic]


# --- photos of a request, through every model asked ------------------------------------------


@dataclass(frozen=True)
class PhotoRun:
    """One photo, decoded once, through every model asked."""

    photo: Photo
    image: DecodedImage  # the first model's input (pixels), with the photo's format and size
    assessments: dict[str, Assessment]  # model name -> what it made of the photo
    decode_ms: float
    infer_ms: dict[str, float]  # model name -> its call (the index's embedder too, when run)
    index_features: Array | None = None  # the species index's embedder, when asked


def shares_network(classifier: LoadedModel, embedder: LoadedModel) -> bool:
    """The embedder is the classifier's own pre-logits: one invoke of the classifier gives both."""
    return (
        classifier.sha256 is not None
        and classifier.sha256 == embedder.sha256
        and embedder.spec.output_key is not None
        and embedder.spec.output_key == classifier.spec.features_tensor
        and classifier.input_spec == embedder.input_spec
    )


def _spec_key(model: LoadedModel) -> tuple[object, ...]:
    spec = model.input_spec
    return (spec.size, spec.dtype, spec.range)


def _assess(model: LoadedModel, probabilities: Array, features: Array | None, calibrated: bool) -> Assessment:
    assert model.scope is not None  # every loaded classifier has one
    return model.scope.assess(probabilities, features, calibrated)


def _run_now(
    photo: Photo, models: list[LoadedModel], embedder: LoadedModel | None, max_pixels: int, calibrated: bool
) -> tuple[PhotoRun, dict[str, Pixels]]:
    """Worker thread: one decode for every input asked, then every model without a batcher
    (and its assessment: the calibration is numpy work too). Returns the run so far and the
    pixels the batched models still need."""
    needs = [*models, *([embedder] if embedder is not None else [])]
    specs = {_spec_key(m): m.input_spec for m in needs}
    started = time.perf_counter()
    decoded = decode_for(photo.data, list(specs.values()), max_pixels=max_pixels)
    decode_ms = (time.perf_counter() - started) * 1000
    pixels = {key: image.pixels for key, image in zip(specs, decoded, strict=True)}
    assessments: dict[str, Assessment] = {}
    infer_ms: dict[str, float] = {}
    waiting: dict[str, Pixels] = {}
    for model in models:
        if model.batcher is not None:
            waiting[model.name] = pixels[_spec_key(model)]
            continue
        started = time.perf_counter()
        probabilities, features = model.predict_with_features(pixels[_spec_key(model)][np.newaxis])
        own = features[0] if features is not None else None
        assessments[model.name] = _assess(model, probabilities[0], own, calibrated)
        infer_ms[model.name] = (time.perf_counter() - started) * 1000
    index_features = None
    if embedder is not None:
        shared = next((m for m in models if shares_network(m, embedder) and m.name in assessments), None)
        if shared is not None:
            index_features = assessments[shared.name].features
        elif embedder.batcher is not None:
            waiting[embedder.name] = pixels[_spec_key(embedder)]
        else:
            started = time.perf_counter()
            index_features = embedder.predict(pixels[_spec_key(embedder)][np.newaxis])[0]
            infer_ms[embedder.name] = (time.perf_counter() - started) * 1000
    run = PhotoRun(photo, decoded[0], assessments, decode_ms, infer_ms, index_features)
    return run, waiting


async def run_photo(
    runner: InferenceRunner,
    photo: Photo,
    models: list[LoadedModel],
    embedder: LoadedModel | None,
    max_pixels: int,
    *,
    calibrated: bool = True,
    observer: InferenceObserver | None = None,
) -> PhotoRun:
    """One photo through ``models`` (and the index's ``embedder``, when given); the batched
    models' calls are awaited together."""
    run, waiting = await runner.run(_run_now, photo, models, embedder, max_pixels, calibrated)
    if waiting:
        batched = {m.name: m for m in [*models, *([embedder] if embedder is not None else [])]}
        started = time.perf_counter()
        outputs = await asyncio.gather(
            *(asyncio.wrap_future(_batcher(batched[name]).submit(pixels)) for name, pixels in waiting.items())
        )
        waited_ms = (time.perf_counter() - started) * 1000  # together: each waited this long
        index_features = run.index_features
        for name, output in zip(waiting, outputs, strict=True):
            run.infer_ms[name] = waited_ms
            if embedder is not None and name == embedder.name and name not in run.assessments:
                index_features = output
            else:
                run.assessments[name] = _assess(batched[name], output, None, calibrated)
        run = replace(run, index_features=index_features)
    if observer is not None:
        observer.observe_photo(run.decode_ms, run.infer_ms)
        if photo.fetch_ms is not None:
            observer.observe_fetch(photo.fetch_ms, len(photo.data))
    return run


def _batcher(model: LoadedModel) -> MicroBatcher:
    assert model.batcher is not None
    return model.batcher
