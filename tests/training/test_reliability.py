"""The expected calibration error and the reliability table, against hand-computed examples, and
how ``evaluate`` reports them (before and after a calibration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.services.calibration import ece as calibration_ece
from app.training.evaluate import evaluate, write_report
from app.training.predictions import Predictions, Ranked
from app.training.reliability import reliability


def test_ece_and_mce_by_hand():
    # bin [0, .1]: 0.05 F, 0.00 F -> conf 0.025, acc 0, gap 0.025 (x2)
    # bin (.1, .2]: 0.15 F                  -> gap 0.15
    # bin (.2, .3]: 0.25 T, 0.30 T          -> conf 0.275, acc 1, gap 0.725 (x2)
    # bin (.8, .9]: 0.85 F                  -> gap 0.85
    # bin (.9, 1]: 0.95 T, 0.95 T           -> conf 0.95, acc 1, gap 0.05 (x2)
    # ECE = (2 * .025 + .15 + 2 * .725 + .85 + 2 * .05) / 8 = 2.6 / 8 = 0.325; MCE = 0.85
    confidence = [0.05, 0.15, 0.25, 0.95, 0.95, 0.85, 0.30, 0.0]
    correct = [False, False, True, True, True, False, True, False]
    measured = reliability(confidence, correct)
    assert measured.ece == pytest.approx(0.325)
    assert measured.mce == pytest.approx(0.85)
    assert measured.photos == 8
    assert [b.count for b in measured.bins] == [2, 1, 2, 0, 0, 0, 0, 0, 1, 2]
    assert [(b.lower, b.upper) for b in measured.bins][:2] == [(0.0, 0.1), (0.1, 0.2)]
    third = measured.bins[2]
    assert (third.confidence, third.accuracy) == (pytest.approx(0.275), 1.0)
    assert measured.bins[3].confidence is None and measured.bins[3].accuracy is None
    # calibrate's ECE is the same implementation: rows whose max is the confidence (40 classes,
    # the rest spread evenly), right where ``correct`` says (the 0.0 photo left out).
    kept = [(c, ok) for c, ok in zip(confidence, correct, strict=True) if c > 0]
    rows = np.array([[c] + [(1 - c) / 39] * 39 for c, _ in kept], np.float32)
    truth = np.array([0 if ok else 1 for _, ok in kept])
    expected = reliability([c for c, _ in kept], [ok for _, ok in kept]).ece
    assert calibration_ece(rows, truth) == pytest.approx(expected, abs=1e-6)


def test_bin_edges_and_a_calibrated_set():
    edges = reliability([0.1, 0.2, 1.0, 0.0], [True, True, True, True], bins=10)
    assert [b.count for b in edges.bins] == [2, 1, 0, 0, 0, 0, 0, 0, 0, 1]  # (lo, hi]; 0 -> first
    honest = reliability([0.75] * 4 + [0.25] * 4, [True, True, True, False, True, False, False, False])
    assert honest.ece == pytest.approx(0.0) and honest.mce == pytest.approx(0.0)
    assert reliability([0.9, 0.9], [False, False], bins=1).ece == pytest.approx(0.9)
    with pytest.raises(ValueError):
        reliability([], [])
    with pytest.raises(ValueError):
        reliability([0.5], [True, False])


def test_evaluate_reports_ece_before_and_after_and_draws_the_diagram(tmp_path):
    truths = ["Aa bb", "Aa bb", "Cc dd", "Cc dd"]
    ranked = [
        Ranked(["Aa bb"], [0.9]),
        Ranked(["Cc dd"], [0.8]),  # wrong
        Ranked(["Cc dd"], [0.6]),
        None,  # unreadable
    ]
    paths = [Path(f"p{i}.jpg") for i in range(4)]
    predictions = Predictions("test", ["Aa bb", "Cc dd"], paths, ranked, [(paths[3], "broken")])
    plain = evaluate(predictions, truths, dataset="hand")
    # bins: 0.6 T -> (.5, .6] gap .4; 0.8 F -> (.7, .8] gap .8; 0.9 T -> (.8, .9] gap .1
    assert plain.ece == pytest.approx((0.4 + 0.8 + 0.1) / 3)
    assert plain.mce == pytest.approx(0.8) and plain.reliability.photos == 3
    assert plain.ece_calibrated is None and plain.reliability_calibrated is None

    predictions.calibrated_top1 = [0.7, 0.55, 0.65, None]
    predictions.calibration = "temperature 2.000 (hand)"
    report = evaluate(predictions, truths, dataset="hand")
    assert report.ece == plain.ece
    # 0.55 F, 0.65 T: (.5, .6] gap .55, (.6, .7] holds 0.65 T and 0.7 T: conf .675, gap .325
    assert report.ece_calibrated == pytest.approx((0.55 + 2 * 0.325) / 3)
    assert report.reliability_calibrated is not None
    assert report.reliability_calibrated.scores == "calibrated: temperature 2.000 (hand)"

    files = write_report(report, predictions, tmp_path / "report")
    with Image.open(files["reliability"]) as png:
        assert png.format == "PNG" and png.width > 600  # two panels
    on_disk = files["json"].read_text()
    assert '"ece":' in on_disk and '"ece_calibrated":' in on_disk and '"bins":' in on_disk

    predictions.calibrated_top1 = [0.7, None, None, None]
    with pytest.raises(ValueError, match="every photo"):
        evaluate(predictions, truths, dataset="hand")
