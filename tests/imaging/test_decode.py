from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from app.errors import PayloadTooLarge, UndecodableImage, UnsupportedMediaType
from app.imaging.decode import decode, sniff_format
from app.models.manifest import InputSpec
from tests.support.images import encode, photo, png_declaring
from tests.support.reference import reference_pixels

U8 = InputSpec()
F32 = InputSpec(dtype="float32", range=(0.0, 1.0))


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "WEBP", "GIF"])
def test_lossless_formats_match_a_plain_rgb_resize(fmt):
    image = photo(300, 260)
    if fmt == "GIF":
        image = image.quantize(64)
    data = encode(image, fmt, lossless=True) if fmt == "WEBP" else encode(image, fmt)
    out = decode(data, U8, max_pixels=10**8)
    assert out.pixels.shape == (224, 224, 3) and out.pixels.dtype == np.uint8
    assert (out.width, out.height) == (300, 260)
    np.testing.assert_array_equal(out.pixels, reference_pixels(Image.open(io.BytesIO(data))))


@pytest.mark.parametrize("mode", ["L", "RGBA", "CMYK", "P", "LA", "I;16"])
def test_every_mode_becomes_rgb(mode):
    base = photo(200, 200)
    if mode == "I;16":
        image = Image.fromarray(np.asarray(base.convert("L"), np.uint16) * 257)
        data = encode(image, "PNG")
    else:
        image = base.convert(mode)
        data = encode(image, "JPEG" if mode == "CMYK" else "PNG")
    out = decode(data, U8, max_pixels=10**8)
    assert out.pixels.shape == (224, 224, 3)
    if mode == "I;16":  # 16-bit grey scaled down, not clipped to white
        grey = out.pixels[..., 0].astype(int)
        expected = reference_pixels(base.convert("L"))[..., 0].astype(int)
        assert np.abs(grey - expected).mean() < 2


def test_transparent_areas_become_white():
    image = Image.new("RGBA", (100, 100), (255, 0, 0, 0))
    out = decode(encode(image, "PNG"), U8, max_pixels=10**8)
    assert (out.pixels == 255).all()


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (64, 64), colour) for colour in ((0, 0, 255), (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    out = decode(buf.getvalue(), U8, max_pixels=10**8)
    assert out.pixels[..., 2].mean() > 200 and out.pixels[..., 0].mean() < 50


def test_exif_orientation_is_applied():
    image = photo(400, 200)  # landscape as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to view": the photo is seen in portrait
    data = encode(image, "JPEG", quality=95, exif=exif.tobytes())
    out = decode(data, U8, max_pixels=10**8)
    assert (out.width, out.height) == (200, 400)
    seen = image.transpose(Image.Transpose.ROTATE_270)
    assert np.abs(out.pixels.astype(int) - reference_pixels(seen).astype(int)).mean() < 6


def test_large_jpeg_is_draft_decoded_close_to_a_full_decode():
    image = photo(4000, 3000)  # 12 MP
    data = encode(image, "JPEG", quality=90)
    out = decode(data, U8, max_pixels=10**8)
    assert (out.width, out.height) == (4000, 3000)
    diff = np.abs(out.pixels.astype(int) - reference_pixels(Image.open(io.BytesIO(data))).astype(int))
    assert diff.mean() < 3


def test_float_input_is_scaled_to_the_manifest_range():
    out = decode(encode(photo(100, 100), "PNG"), F32, max_pixels=10**8)
    assert out.pixels.dtype == np.float32
    assert out.pixels.min() >= 0.0 and out.pixels.max() <= 1.0


def test_errors_are_translated():
    with pytest.raises(UnsupportedMediaType):
        decode(b"%PDF-1.7 not an image", U8, max_pixels=10**8)
    with pytest.raises(UndecodableImage):
        decode(encode(photo(), "JPEG")[:500], U8, max_pixels=10**8)
    with pytest.raises(PayloadTooLarge):
        decode(png_declaring(5000, 5000), U8, max_pixels=10_000_000)


def test_sniff_format():
    assert sniff_format(b"\xff\xd8\xff\xe0") == "JPEG"
    assert sniff_format(b"RIFF\0\0\0\0WEBPVP8 ") == "WEBP"
    assert sniff_format(b"\0\0\0\x18ftypheic") == "HEIF"
    assert sniff_format(b"<html>") is None
