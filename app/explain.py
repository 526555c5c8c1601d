"""What the model is looking at: occlusion sensitivity for the top class.

A grey square slides over the model's input; where hiding the photo lowers the top class's
probability most is where the model looked. It needs nothing but the model's scores, so it works
the same for TFLite, SavedModels and heads. The default grid (a patch of 1/7 of the side moved by
half a patch: 169 positions at 224x224) costs 169 model calls, batched.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageFilter

from app.core.types import InputSpec
from app.identification.decide import top_k_species
from app.imaging.decode import DecodedImage, decode
from app.models.registry import LoadedModel

DISPLAY_SIDE = 640  # the overlay's longer side at most
_BATCH = 32  # occluded copies per model call: bounded memory at 299x299 float32

# Anchors of a perceptually ordered ramp (dark purple -> orange -> pale yellow, like "inferno").
_RAMP = np.array(
    [(0, 0, 4), (66, 10, 104), (147, 38, 103), (221, 81, 58), (252, 165, 10), (252, 255, 164)],
    dtype=np.float32,
)


@dataclass(frozen=True)
class Explanation:
    class_index: int
    score: float  # the top class's probability on the whole photo
    grid: npt.NDArray[np.float32]  # [rows, cols]: probability lost with the patch at each place
    patch: int  # pixels of the model's input
    stride: int
    heat: npt.NDArray[np.float32]  # [H, W] of the model's input, 0..1 (1: the most telling)


def _positions(side: int, patch: int, stride: int) -> list[int]:
    places = list(range(0, side - patch + 1, stride))
    if places[-1] != side - patch:  # the last row/column reaches the edge
        places.append(side - patch)
    return places


def occlusion(model: LoadedModel, pixels: npt.NDArray[np.generic], *, grid: int = 7) -> Explanation:
    height, width = pixels.shape[:2]
    patch = max(1, min(height, width) // grid)
    stride = max(1, patch // 2)
    low, high = model.input_spec.range
    fill = np.asarray((low + high) / 2, dtype=pixels.dtype)  # mid-grey in the model's own units

    base = model.predict(pixels[np.newaxis])[0]
    cls = top_k_species(base, 1, model.spec.background_index)[0][0]
    ys, xs = _positions(height, patch, stride), _positions(width, patch, stride)
    places = [(y, x) for y in ys for x in xs]
    lost = np.empty(len(places), dtype=np.float32)
    for start in range(0, len(places), _BATCH):
        chunk = places[start : start + _BATCH]
        batch = np.repeat(pixels[np.newaxis], len(chunk), axis=0)
        for i, (y, x) in enumerate(chunk):
            batch[i, y : y + patch, x : x + patch] = fill
        lost[start : start + len(chunk)] = base[cls] - model.predict(batch)[:, cls]
    lost = np.maximum(lost, 0.0)  # hiding a distraction may raise the score: not "looked at"

    heat = np.zeros((height, width), dtype=np.float32)
    covered = np.zeros((height, width), dtype=np.float32)
    for (y, x), value in zip(places, lost, strict=True):
        heat[y : y + patch, x : x + patch] += value
        covered[y : y + patch, x : x + patch] += 1
    heat /= np.maximum(covered, 1)
    peak = float(heat.max())
    if peak > 0:
        heat /= peak
    return Explanation(
        class_index=cls,
        score=float(base[cls]),
        grid=lost.reshape(len(ys), len(xs)),
        patch=patch,
        stride=stride,
        heat=heat,
    )


def _colour(heat: npt.NDArray[np.float32]) -> npt.NDArray[np.uint8]:
    position = heat * (len(_RAMP) - 1)
    low = np.clip(np.floor(position).astype(int), 0, len(_RAMP) - 2)
    t = (position - low)[..., np.newaxis]
    rgb = _RAMP[low] * (1 - t) + _RAMP[low + 1] * t
    out: npt.NDArray[np.uint8] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def overlay_png(data: bytes, image: DecodedImage, explanation: Explanation, *, max_pixels: int) -> bytes:
    """The photo as a person sees it (upright, aspect kept) under the heat map; the heat is drawn
    more opaque where it is hotter, and not at all where it is cold. ``image`` is the photo as
    decoded for the model: its original size is known, so it is decoded once more, at display size."""
    scale = min(1.0, DISPLAY_SIDE / max(image.width, image.height))
    size = (max(1, round(image.height * scale)), max(1, round(image.width * scale)))
    photo = decode(data, InputSpec(size=size), max_pixels=max_pixels).pixels.astype(np.float32)
    heat = explanation.heat
    # The heat is blocky by construction (patch and stride); a blur of one stride, in display
    # pixels, shows it as the smooth field it estimates.
    stride_px = explanation.stride * size[1] / heat.shape[1]
    grey = Image.fromarray(np.round(heat * 255).astype(np.uint8), "L")
    smooth = grey.resize((size[1], size[0]), Image.Resampling.BILINEAR).filter(
        ImageFilter.GaussianBlur(stride_px)
    )
    hot = np.asarray(smooth, dtype=np.float32)
    hot /= max(float(hot.max()), 1.0)  # the blur lowers the peak; the hottest place stays hottest
    alpha = (0.7 * hot)[..., np.newaxis]  # cold parts of the photo stay as they are
    blended = photo * (1 - alpha) + _colour(hot).astype(np.float32) * alpha
    buffer = io.BytesIO()
    Image.fromarray(blended.astype(np.uint8), "RGB").save(buffer, "PNG", optimize=False)
    return buffer.getvalue()


@dataclass(frozen=True)
class Explained:
    explanation: Explanation
    image: DecodedImage
    png: bytes | None  # the overlay, when asked for
    decode_ms: float
    occlusion_ms: float


def explain(model: LoadedModel, data: bytes, max_pixels: int, draw: bool) -> Explained:
    """Blocking (a worker thread): decode, occlude, and draw the overlay if ``draw``."""
    started = time.perf_counter()
    image = decode(data, model.input_spec, max_pixels=max_pixels)
    decoded = time.perf_counter()
    explanation = occlusion(model, image.pixels)
    occluded = time.perf_counter()
    png = overlay_png(data, image, explanation, max_pixels=max_pixels) if draw else None
    return Explained(explanation, image, png, (decoded - started) * 1000, (occluded - decoded) * 1000)
