"""Decode -> one model, called *inference* throughout: what the offline side (index building,
calibration, training, classify FOLDER, evaluate) runs over photos on disk, and the building
block of the request path (``app.identification.run`` decodes once for several models).

``infer_now`` decodes and runs one photo in the calling thread (a worker thread).
``infer_files`` is the same for photos on disk: batches spread over worker threads, a photo that
will not decode reported rather than fatal.

A model's output is *probabilities* for a classifier and *features* for an embedder.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from app.errors import ServiceError
from app.imaging.decode import DecodedImage, Transform, decode
from app.models.loaded import LoadedModel


@dataclass(frozen=True, slots=True)
class Inference:
    image: DecodedImage
    output: npt.NDArray[np.float32]  # [D]: probabilities (classifier) or features (embedder)
    decode_ms: float
    infer_ms: float


def _decode(
    model: LoadedModel, data: bytes, max_pixels: int, transform: Transform | None = None
) -> tuple[DecodedImage, float]:
    started = time.perf_counter()
    image = decode(data, model.input_spec, max_pixels=max_pixels, transform=transform)
    return image, (time.perf_counter() - started) * 1000


def infer_now(model: LoadedModel, data: bytes, max_pixels: int) -> Inference:
    image, decode_ms = _decode(model, data, max_pixels)
    started = time.perf_counter()
    output = model.predict(image.pixels[np.newaxis])[0]
    return Inference(image, output, decode_ms, (time.perf_counter() - started) * 1000)


@dataclass
class FileInferences:
    outputs: npt.NDArray[np.float32]  # [N, D]; the rows of photos that failed are zero
    ok: npt.NDArray[np.bool_]  # [N]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    features: npt.NDArray[np.float32] | None = None  # [N, F] a classifier's pre-logits, when asked


def infer_files(
    model: LoadedModel,
    paths: list[Path],
    *,
    max_pixels: int,
    workers: int,
    batch_size: int = 16,
    transform: Transform | None = None,
    on_progress: Callable[[int], None] | None = None,
    with_features: bool = False,
) -> FileInferences:
    """Each worker decodes a batch of photos and calls the model once on them (a SavedModel
    gains from the batch; a TFLite model runs them on that worker's own interpreter).
    ``with_features``: also a classifier's pre-logit features (None where it has none)."""
    dim = model.output_dim
    if dim is None:
        raise ValueError(f"model {model.spec.name} is not loaded")
    result = FileInferences(np.zeros((len(paths), dim), np.float32), np.zeros(len(paths), bool))

    allocating = threading.Lock()

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
            if with_features:
                outputs, features = model.predict_with_features(np.stack(pixels))
                if features is not None:
                    with allocating:  # the first batch to finish sizes the array
                        if result.features is None:
                            result.features = np.zeros((len(paths), features.shape[1]), np.float32)
                    result.features[rows] = features
            else:
                outputs = model.predict(np.stack(pixels))
            result.outputs[rows] = outputs
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
