"""The CPU-bound middle of a request: decode -> model.

``run_model`` does both in one worker-thread hop (the CLI and TFLite models). ``process`` is what
the API awaits: the same hop, or, for a model with a micro-batcher, the decode in a worker thread
and the model call in the batcher's, awaited without holding a worker.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.imaging.decode import DecodedImage, decode
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner


@dataclass(frozen=True, slots=True)
class ModelOutput:
    image: DecodedImage
    scores: npt.NDArray[np.float32]  # [D]: class probabilities or features
    decode_ms: float
    infer_ms: float


def _decode(model: LoadedModel, data: bytes, max_pixels: int) -> tuple[DecodedImage, float]:
    started = time.perf_counter()
    image = decode(data, model.spec.input, max_pixels=max_pixels)
    return image, (time.perf_counter() - started) * 1000


def run_model(model: LoadedModel, data: bytes, max_pixels: int) -> ModelOutput:
    image, decode_ms = _decode(model, data, max_pixels)
    started = time.perf_counter()
    scores = model.scores(image.pixels[np.newaxis])[0]
    return ModelOutput(image, scores, decode_ms, (time.perf_counter() - started) * 1000)


async def process(runner: InferenceRunner, model: LoadedModel, data: bytes, max_pixels: int) -> ModelOutput:
    batcher = model.batcher
    if batcher is None:
        return await runner.run(run_model, model, data, max_pixels)
    image, decode_ms = await runner.run(_decode, model, data, max_pixels)
    started = time.perf_counter()
    scores = await asyncio.wrap_future(batcher.submit(image.pixels))
    return ModelOutput(image, scores, decode_ms, (time.perf_counter() - started) * 1000)
