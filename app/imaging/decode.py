"""Bytes -> RGB pixels the model expects.

Decoding, not inference, is the cost of a real photo (a 12 MP JPEG: ~130 ms full decode vs
~16 ms in draft mode), so JPEGs are decoded by the DCT scaler straight to the smallest scale
at or above the model's input, then resized once. Pillow's errors are translated here into
the service's: no magic bytes -> 415, an image that will not decode -> 422, too many pixels -> 413.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, ImageOps, UnidentifiedImageError

from app.core.types import InputSpec
from app.errors import PayloadTooLarge, UndecodableImage, UnsupportedMediaType
from app.imaging.photo_metadata import PhotoMetadata, read_metadata

# Openers Pillow may use. The JPEG opener also yields MPO (what many phone cameras write:
# a JPEG with extra frames), so MPO needs no entry of its own.
ALLOWED_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "GIF")

_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "JPEG"),
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"BM", "BMP"),
)


def sniff_format(data: bytes) -> str | None:
    """The image format the magic bytes claim, or None. Pillow is not asked first, because
    'claims to be an image but is broken' (422) and 'is not an image' (415) need telling apart."""
    for magic, name in _SIGNATURES:
        if data.startswith(magic):
            return name
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WEBP"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"avif"):
        return "HEIF"
    return None


@dataclass(frozen=True, slots=True)
class DecodedImage:
    pixels: npt.NDArray[np.generic]  # [H, W, 3] in the model's dtype and range
    format: str
    width: int  # of the original, after EXIF orientation
    height: int
    metadata: PhotoMetadata | None = None  # where and when the photo says it was taken


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        # Transparent areas have no colour of their own; white is what a viewer shows.
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        # 16-bit and float greys: Pillow's convert clips at 255, so scale down first.
        values = np.asarray(image, dtype=np.float32)
        peak = float(values.max()) if values.size else 0.0
        if peak > 255:
            values = values * (255.0 / (65535.0 if peak <= 65535 else peak))
        return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


Transform = Callable[[Image.Image], Image.Image]


def decode(
    data: bytes, spec: InputSpec, *, max_pixels: int, transform: Transform | None = None
) -> DecodedImage:
    """Runs in a worker thread: CPU-bound, and it must not hold up the event loop.

    ``transform`` (training-time augmentation: a flip, a crop) sees the upright RGB photo before
    the resize to the model's input."""
    return decode_for(data, [spec], max_pixels=max_pixels, transform=transform)[0]


def decode_for(
    data: bytes, specs: Sequence[InputSpec], *, max_pixels: int, transform: Transform | None = None
) -> list[DecodedImage]:
    """One decode of the photo, resized for each of ``specs`` (several models, one photo): the
    JPEG draft scale is chosen for the largest input, so a single-spec call gives exactly what
    ``decode`` gives. Worker threads only."""
    claimed = _claimed_format(data)
    # Pillow registers the WebP opener only on full init; open(formats=...) does not trigger it.
    Image.init()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
            width, height = image.size
            if width * height > max_pixels:
                raise PayloadTooLarge(
                    f"image is {width}x{height} pixels; at most {max_pixels} are accepted",
                    detail={"width": width, "height": height, "max_pixels": max_pixels},
                )
            fmt = image.format or claimed
            # getexif() stays unguarded, as it was: reading the metadata must not change which
            # photos decode. read_metadata itself never raises.
            exif = image.getexif()
            metadata = read_metadata(exif)
            # Orientations 5-8 turn the photo by 90 degrees: report the size as it is seen.
            turned = exif.get(0x0112, 1) in (5, 6, 7, 8)
            original = (height, width) if turned else (width, height)
            if fmt in ("JPEG", "MPO"):
                # draft() keeps the result at or above the requested size; ask for the square
                # of the larger side so the EXIF turn cannot leave it too small.
                side = max(max(spec.size) for spec in specs)
                image.draft("RGB", (side, side))
            ImageOps.exif_transpose(image, in_place=True)
            rgb = _to_rgb(image)
            if transform is not None:
                rgb = transform(rgb)
            resized = [rgb.resize(spec.size[::-1], Image.Resampling.BILINEAR) for spec in specs]
    except PayloadTooLarge:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PayloadTooLarge(f"image refused as a decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise UndecodableImage(
            f"the data starts like a {claimed} file but cannot be read as one", detail={"format": claimed}
        ) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise UndecodableImage(
            f"the {claimed} image is corrupt or truncated: {exc}", detail={"format": claimed}
        ) from exc
    return [
        DecodedImage(
            pixels=_to_input(image, spec),
            format=fmt,
            width=original[0],
            height=original[1],
            metadata=metadata,
        )
        for image, spec in zip(resized, specs, strict=True)
    ]


def _claimed_format(data: bytes) -> str:
    """What the first bytes say the file is; 415 when it is no photo format we read."""
    claimed = sniff_format(data)
    if claimed is None:
        raise UnsupportedMediaType(
            "the data is not an image: send JPEG, PNG, WebP, BMP or GIF",
            detail={"bytes": len(data)},
        )
    if claimed == "HEIF":
        raise UnsupportedMediaType(
            "HEIC/HEIF/AVIF photos are not supported: send JPEG, PNG, WebP, BMP or GIF",
            detail={"format": "HEIF"},
        )
    return claimed


def _to_input(resized: Image.Image, spec: InputSpec) -> npt.NDArray[np.generic]:
    pixels: npt.NDArray[np.generic] = np.asarray(resized, dtype=np.uint8)
    if spec.dtype == "float32":
        low, high = spec.range
        pixels = pixels.astype(np.float32) * np.float32((high - low) / 255.0) + np.float32(low)
    return pixels
