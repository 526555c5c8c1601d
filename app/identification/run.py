"""Stage 2, run the models. In: the photos' bytes and the plan's models. Out: per photo, the
decoded image and each model's own output (probabilities, and the pre-logit features where the
backend gives them), with the time each took.

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

from app.imaging.decode import DecodedImage, decode_for
from app.imaging.photo import Photo
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner

Array = npt.NDArray[np.float32]
Pixels = npt.NDArray[np.generic]


# --- photos of a request, through every model asked ------------------------------------------


@dataclass(frozen=True, slots=True)
class ModelOutput:
    probabilities: Array  # [C] the model's own output
    features: Array | None  # [F] its pre-logits, where the backend gives them


@dataclass(frozen=True)
class PhotoRun:
    """One photo, decoded once, through every model asked."""

    photo: Photo
    image: DecodedImage  # the first model's input (pixels), with the photo's format and size
    outputs: dict[str, ModelOutput]  # model name -> what it gave
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


def _run_now(
    photo: Photo, models: list[LoadedModel], embedder: LoadedModel | None, max_pixels: int
) -> tuple[PhotoRun, dict[str, Pixels]]:
    """Worker thread: one decode for every input asked, then every model without a batcher.
    Returns the run so far and the pixels the batched models still need."""
    needs = [*models, *([embedder] if embedder is not None else [])]
    specs = {_spec_key(m): m.input_spec for m in needs}
    started = time.perf_counter()
    decoded = decode_for(photo.data, list(specs.values()), max_pixels=max_pixels)
    decode_ms = (time.perf_counter() - started) * 1000
    pixels = {key: image.pixels for key, image in zip(specs, decoded, strict=True)}
    outputs: dict[str, ModelOutput] = {}
    infer_ms: dict[str, float] = {}
    waiting: dict[str, Pixels] = {}
    for model in models:
        if model.batcher is not None:
            waiting[model.name] = pixels[_spec_key(model)]
            continue
        started = time.perf_counter()
        probabilities, features = model.predict_with_features(pixels[_spec_key(model)][np.newaxis])
        outputs[model.name] = ModelOutput(probabilities[0], features[0] if features is not None else None)
        infer_ms[model.name] = (time.perf_counter() - started) * 1000
    index_features = None
    if embedder is not None:
        shared = next((m for m in models if shares_network(m, embedder) and m.name in outputs), None)
        if shared is not None:
            index_features = outputs[shared.name].features
        elif embedder.batcher is not None:
            waiting[embedder.name] = pixels[_spec_key(embedder)]
        else:
            started = time.perf_counter()
            index_features = embedder.predict(pixels[_spec_key(embedder)][np.newaxis])[0]
            infer_ms[embedder.name] = (time.perf_counter() - started) * 1000
    run = PhotoRun(photo, decoded[0], outputs, decode_ms, infer_ms, index_features)
    return run, waiting


async def run_photo(
    runner: InferenceRunner,
    photo: Photo,
    models: list[LoadedModel],
    embedder: LoadedModel | None,
    max_pixels: int,
) -> PhotoRun:
    """One photo through ``models`` (and the index's ``embedder``, when given)."""
    run, waiting = await runner.run(_run_now, photo, models, embedder, max_pixels)
    if not waiting:
        return run
    batched = {m.name: m for m in [*models, *([embedder] if embedder is not None else [])]}
    index_features = run.index_features
    for name, pixels in waiting.items():
        model = batched[name]
        assert model.batcher is not None
        started = time.perf_counter()
        output = await asyncio.wrap_future(model.batcher.submit(pixels))
        run.infer_ms[name] = (time.perf_counter() - started) * 1000
        if embedder is not None and name == embedder.name and name not in run.outputs:
            index_features = output
        else:
            run.outputs[name] = ModelOutput(output, None)
    return replace(run, index_features=index_features)
