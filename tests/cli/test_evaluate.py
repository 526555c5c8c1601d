"""`python -m app evaluate`: a classifier (--model) or the lookup index (--index) on labelled
Leeds photos: the figures printed and the report files written."""

from __future__ import annotations

import csv
import json
import re

import pytest
from PIL import Image

from tests.cli.runner import ok, refused, run_cli
from tests.support.figures import figure
from tests.support.images import encode, photo
from tests.support.manifests import INSECTS, aiy_entry, with_scope, write_manifest


@pytest.mark.shared
def test_evaluate_the_insects_classifier(leeds_csv, leeds_photos, real_manifest, tmp_path):
    out = tmp_path / "report"
    options = "--model aiy_insects_v1 --no-progress"
    result = ok(run_cli("evaluate", leeds_csv, options, "--out", out, manifest=real_manifest))
    print(result.stdout)
    figures = re.search(r"top-1 ([0-9.]+), top-5 ([0-9.]+), macro-F1 ([0-9.]+)", result.stdout)
    assert figures, result.stdout
    figure(f"evaluate aiy_insects_v1 on Leeds (300): {figures[0]}")
    assert "aiy_insects_v1 on 300 photos of 10 species (0 unreadable)" in result.stdout, result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["evaluated"] == 300 and report["failed"] == 0
    assert report["top1"] == pytest.approx(float(figures[1]), abs=1e-3) and report["top1"] >= 0.9
    assert report["top5"] == pytest.approx(float(figures[2]), abs=1e-3) and report["top5"] >= report["top1"]
    assert report["macro_f1"] == pytest.approx(float(figures[3]), abs=1e-3) and report["macro_f1"] >= 0.9
    assert {c["name"] for c in report["classes"]} == {name for _, name in leeds_photos}
    assert all(c["support"] == 30 and c["in_model"] for c in report["classes"])
    assert sum(map(sum, report["confusion"])) == 300
    with Image.open(out / "confusion.png") as png:
        assert png.format == "PNG" and png.width > 400 and png.height > 400
    page = (out / "mistakes.html").read_text()
    wrong = round(300 * (1 - report["top1"]))
    assert page.count("<figure>") == min(wrong, 24) and ("data:image/jpeg;base64," in page or wrong == 0)
    assert (out / "predictions.csv").read_text().count("\n") == 1 + 300 * 5
    assert len(list(csv.DictReader((out / "per_class.csv").open()))) == 10
    assert f"wrote {out / 'report.json'}" in result.stdout
    # Calibration of the endpoint's own probabilities (this manifest has no calibration file).
    ece = re.search(r"equal-width bins\): ECE ([0-9.]+), MCE ([0-9.]+)$", result.stdout, re.M)
    assert ece, result.stdout
    figure(f"evaluate aiy_insects_v1 on Leeds (300), uncalibrated: ECE {ece[1]}, MCE {ece[2]}")
    assert report["ece"] == pytest.approx(float(ece[1]), abs=1e-3)
    assert report["ece"] <= 0.2  # measured ECE 0.096 (MCE 0.539); top-1 0.967, macro-F1 0.982
    assert (
        report["reliability_calibrated"] is None
        and sum(b["count"] for b in report["reliability"]["bins"]) == 300
    )
    with Image.open(out / "reliability.png") as png:
        assert png.format == "PNG" and png.width > 300


@pytest.mark.shared
def test_evaluate_prints_the_ece_before_and_after_the_models_calibration(leeds_photos, tmp_path):
    """A few dozen Leeds photos, the insects model with its shipped calibration file."""
    manifest = write_manifest(tmp_path / "models.toml", [with_scope(aiy_entry(*INSECTS))])
    photos = tmp_path / "photos.csv"
    photos.write_text("path,label\n" + "".join(f"{p},{n}\n" for p, n in leeds_photos[3::8]))
    out = tmp_path / "report"
    result = ok(
        run_cli("evaluate", photos, "--model aiy_insects_v1 --no-progress --out", out, manifest=manifest)
    )
    line = re.search(
        r"ECE ([0-9.]+), MCE [0-9.]+; calibrated: temperature ([0-9.]+) \(.+\): ECE ([0-9.]+), MCE [0-9.]+$",
        result.stdout,
        re.M,
    )
    assert line, result.stdout
    report = json.loads((out / "report.json").read_text())
    assert report["evaluated"] == 38
    assert report["ece"] == pytest.approx(float(line[1]), abs=1e-3)
    assert report["ece_calibrated"] == pytest.approx(float(line[3]), abs=1e-3)
    assert float(line[2]) == pytest.approx(0.530, abs=0.2)
    # measured on these 38 photos: ECE 0.136 -> 0.058 calibrated
    assert report["ece_calibrated"] <= 0.1 and report["ece_calibrated"] < report["ece"]
    with Image.open(out / "reliability.png") as png:
        assert png.format == "PNG" and png.width > 600  # two panels


@pytest.mark.shared
def test_evaluate_an_index(leeds_csv, real_manifest, tmp_path):
    """An index of the odd Leeds photos, evaluated on the even ones."""
    rows = list(csv.DictReader(leeds_csv.open()))
    for part, keep in (("odd", 1), ("even", 0)):
        with (tmp_path / f"{part}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["path", "label"])
            writer.writeheader()
            writer.writerows(r for i, r in enumerate(rows) if i % 2 == keep)
    index, out = tmp_path / "index", tmp_path / "lookup"
    build = "--embedder aiy_insects_features --no-progress"
    ok(run_cli("build-index", tmp_path / "odd.csv", "--out", index, build, manifest=real_manifest))
    evaluate = ("evaluate", tmp_path / "even.csv", "--index", index, "--out", out, "--no-progress")
    lookup = ok(run_cli(*evaluate, manifest=real_manifest))
    print(lookup.stdout)
    report = json.loads((out / "report.json").read_text())
    figure(f"evaluate --index (150 odd Leeds photos indexed, 150 even looked up): top-1 {report['top1']:.3f}")
    assert report["source"].startswith("index ") and report["evaluated"] == 150
    assert report["top1"] >= 0.9
    assert f"top-1 {report['top1']:.3f}" in lookup.stdout


def test_exactly_one_of_model_or_index(tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", [])
    photos = tmp_path / "photos"
    (photos / "Danaus_plexippus").mkdir(parents=True)
    out = tmp_path / "report"
    both = run_cli("evaluate", photos, "--out", out, "--model m --index", tmp_path, manifest=manifest)
    assert refused(both) == "error: give exactly one of --model or --index"
    neither = run_cli("evaluate", photos, "--out", out, manifest=manifest)
    assert refused(neither) == "error: give exactly one of --model or --index"
    empty = run_cli("evaluate", photos, "--out", out, "--model m", manifest=manifest)
    assert refused(empty).startswith(f"error: no photos under {photos}")
    (photos / "Danaus_plexippus" / "one.jpg").write_bytes(encode(photo(), "JPEG"))
    no_index = run_cli("evaluate", photos, "--out", out, "--index", photos, manifest=manifest)
    assert refused(no_index) == f"error: no index in {photos}: build one with `python -m app build-index`"
    assert not out.exists()


def test_evaluate_names_the_training_extra_when_it_is_missing(tmp_path, without_training_extra):
    manifest = write_manifest(tmp_path / "models.toml", [])
    photos = tmp_path / "photos"
    (photos / "Danaus_plexippus").mkdir(parents=True)
    out = tmp_path / "report"
    result = run_cli(
        "evaluate", photos, "--model m --out", out, manifest=manifest, env=without_training_extra
    )
    assert refused(result) == "error: evaluate needs the 'training' extra: pip install 'species-id[training]'"
