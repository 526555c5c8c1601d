"""`python -m app explain`: the photo under an occlusion heat map for the model's top class, as a
PNG of the photo's proportions (its own size up to 640 px), and the top class printed."""

from __future__ import annotations

import json

import pytest
from PIL import Image

from tests.cli.runner import ok, refused, run_cli, usage_error
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

DRAGONFLY = SHARED / "samples" / "Micrathyria_hagenii_01.bmp"  # 512x418: under 640, kept as it is


def test_explain_cli_writes_the_overlay(real_manifest, tmp_path):
    photo = SHARED / "datasets" / "leedsbutterfly" / "images" / "009_0003.jpg"
    out = tmp_path / "explain.png"
    result = ok(run_cli("explain", photo, "--model aiy_insects_v1 --out", out, manifest=real_manifest))
    assert result.stdout.startswith("Vanessa atalanta ("), result.stdout
    with Image.open(out) as png, Image.open(photo) as original:
        # At most 640 px on the long side, the photo's own proportions (672x448 here).
        assert png.format == "PNG" and png.width == 640
        assert abs(png.height / png.width - original.height / original.width) < 0.01


def test_a_small_photo_keeps_its_size_and_the_top_class_is_classifys(real_manifest, tmp_path):
    out = tmp_path / "dragonfly.png"
    result = ok(run_cli("explain", DRAGONFLY, "--model aiy_insects_v1 --out", out, manifest=real_manifest))
    with Image.open(out) as png, Image.open(DRAGONFLY) as original:
        assert png.format == "PNG" and png.size == original.size == (512, 418)
    classified = ok(run_cli("classify", DRAGONFLY, "--model aiy_insects_v1 --json", manifest=real_manifest))
    top = json.loads(classified.stdout)["results"][0]
    assert result.stdout.startswith(f"{top['scientific_name']} ({top['score']:.3f}); "), (result.stdout, top)
    # 1/7 of the 224 px input, moved by half its side: a 13x13 grid.
    assert "hiding the 32px square at row" in result.stdout and "of the 13x13 grid" in result.stdout
    assert result.stdout.rstrip().endswith(f"wrote {out}")


def test_explain_refuses_what_is_not_a_photo(real_manifest, tmp_path):
    notes = tmp_path / "notes.jpg"
    notes.write_text("field notes, not a photo")
    out = tmp_path / "explain.png"
    options = ("--model aiy_insects_v1 --out", out)
    reason = refused(run_cli("explain", notes, *options, manifest=real_manifest))
    assert reason.startswith("error: the data is not an image"), reason
    folder = usage_error(run_cli("explain", tmp_path, *options, manifest=real_manifest))
    assert "is a directory" in folder, folder
    embedder = run_cli(
        "explain", DRAGONFLY, "--model aiy_insects_features --out", out, manifest=real_manifest
    )
    assert refused(embedder) == "error: no classifier named 'aiy_insects_features'"
    assert not out.exists()
