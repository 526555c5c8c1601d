"""The CPU-bound middle of a request, run in one worker-thread hop: decode -> model.

The API and the CLI both call ``run_model`` so that a photo is treated the same way whether
it arrives over HTTP or from a folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.imaging.decode import DecodedImage, decode
from app.models.registry import LoadedModel


@dataclass(frozen=True, slots=True)
class ModelOutput:
    image: DecodedImage
    scores: npt.NDArray[np.float32]  # [D]: class probabilities or features
    decode_ms: float
    infer_ms: float


def run_model(model: LoadedModel, data: bytes, max_pixels: int) -> ModelOutput:
    started = time.perf_counter()
    image = decode(data, model.spec.input, max_pixels=max_pixels)
    decoded = time.perf_counter()
    scores = model.scores(image.pixels[np.newaxis])[0]
    finished = time.perf_counter()
    return ModelOutput(
        image=image,
        scores=scores,
        decode_ms=(decoded - started) * 1000,
        infer_ms=(finished - decoded) * 1000,
    )
