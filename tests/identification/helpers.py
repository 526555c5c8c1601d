"""What the request path's tests share besides fixtures: photos of nothing and an observer that
records what it is told."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def grey_png(size: int = 300) -> bytes:
    return png(Image.new("RGB", (size, size), (128, 128, 128)))


def noise_png(size: int = 300, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return png(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB"))


class Recorder:
    """An InferenceObserver (``app.identification.timings``) that remembers what it was told."""

    def __init__(self) -> None:
        self.photos: list[tuple[float, dict[str, float]]] = []
        self.fetches: list[tuple[float, int]] = []

    def observe_photo(self, decode_ms: float, infer_ms: dict[str, float]) -> None:
        self.photos.append((decode_ms, dict(infer_ms)))

    def observe_fetch(self, fetch_ms: float, size: int) -> None:
        self.fetches.append((fetch_ms, size))
