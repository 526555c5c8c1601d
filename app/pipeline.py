"""The CPU-bound middle of a request: decode -> model.

``run_model`` does both in one worker-thread hop (the CLI and TFLite models). ``process`` is what
the API awaits: the same hop, or, for a model with a micro-batcher, the decode in a worker thread
and the model call in the batcher's, awaited without holding a worker. ``score_files`` is the
same decode -> model for photos on disk (classify, evaluate, build-index, train-head): batches
spread over worker threads, a photo that will not decode reported rather than fatal.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.errors import ServiceError
from app.imaging.decode import DecodedImage, Transform, decode
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner


@dataclass(frozen=True, slots=True)
class ModelOutput:
    image: DecodedImage
    scores: npt.NDArray[np.float32]  # [D]: class probabilities or features
    decode_ms: float
    infer_ms: float


def _decode(
    model: LoadedModel, data: bytes, max_pixels: int, transform: Transform | None = None
) -> tuple[DecodedImage, float]:
    started = time.perf_counter()
    image = decode(data, model.input_spec, max_pixels=max_pixels, transform=transform)
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


@dataclass
class Scored:
    scores: npt.NDArray[np.float32]  # [N, D]; the rows of photos that failed are zero
    ok: npt.NDArray[np.bool_]  # [N]
    failures: list[tuple[Path, str]] = field(default_factory=list)


def score_files(
    model: LoadedModel,
    paths: list[Path],
    *,
    max_pixels: int,
    workers: int,
    batch_size: int = 16,
    transform: Transform | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> Scored:
    """Each worker decodes a batch of photos and calls the model once on them (a SavedModel
    gains from the batch; a TFLite model runs them on that worker's own interpreter)."""
    dim = model.num_outputs
    if dim is None:
        raise ValueError(f"model {model.spec.name} is not loaded")
    result = Scored(np.zeros((len(paths), dim), np.float32), np.zeros(len(paths), bool))

    def run_batch(start: int) -> list[str | None]:
        errors: list[str | None] = []
        pixels, rows = [], []
        for i, path in enumerate(paths[start : start + batch_size], start):
            try:
                pixels.append(_decode(model, path.read_bytes(), max_pixels, transform)[0].pixels)
                rows.append(i)
                errors.append(None)
            except (ServiceError, OSError) as exc:
                errors.append(getattr(exc, "message", None) or str(exc))
        if pixels:
            result.scores[rows] = model.scores(np.stack(pixels))
            result.ok[rows] = True
        return errors

    with ThreadPoolExecutor(max_workers=workers) as pool:
        starts = range(0, len(paths), batch_size)
        for start, errors in zip(starts, pool.map(run_batch, starts), strict=True):
            for i, error in enumerate(errors, start):
                if error is not None:
                    result.failures.append((paths[i], error))
            if on_progress is not None:
                on_progress(len(errors))
    return result
