"""Training-time augmentation by name: each is a ``decode`` transform on the upright RGB photo.

Named, so an augmented copy's embeddings are cached under their own key, and a head's JSON can
say which were used.
"""

from __future__ import annotations

from PIL import Image, ImageOps

from app.imaging.decode import Transform


def _centre_crop(image: Image.Image, keep: float = 0.8) -> Image.Image:
    width, height = image.size
    w, h = max(1, round(width * keep)), max(1, round(height * keep))
    left, top = (width - w) // 2, (height - h) // 2
    return image.crop((left, top, left + w, top + h))


AUGMENTATIONS: dict[str, Transform] = {
    "flip": ImageOps.mirror,  # left-right: a butterfly seen from the other side
    "crop": _centre_crop,  # the central 80 %: a closer framing
}
