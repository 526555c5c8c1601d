"""Predictions vs the truth: top-1, top-5, macro-F1, per-class precision/recall/support, the
confusion matrix, the most confident mistakes and how well the top-1 confidence is calibrated
(ECE and the reliability table, ``app.training.reliability``); written as JSON (to compare
runs), CSV, two PNGs and an HTML page.

Names are matched case- and space-insensitively. A true species the model cannot answer is
listed under ``not_in_model``: its photos count as wrong, since a user asked about them.
"""

from __future__ import annotations

import base64
import csv
import html
import io
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from PIL import Image
from pydantic import BaseModel
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from app.training.predictions import Predictions, write_predictions_csv
from app.training.reliability import Reliability, reliability

OTHER = "(other)"  # a prediction outside the true classes
WORST_SHOWN = 24


class ClassMetrics(BaseModel):
    name: str
    precision: float
    recall: float
    f1: float
    support: int
    in_model: bool


class Mistake(BaseModel):
    path: str
    truth: str
    predicted: str
    score: float
    truth_rank: int | None  # 1-based within the top-k, None when absent


class EvaluationReport(BaseModel):
    source: str
    dataset: str
    created_at: str
    images: int
    failed: int
    evaluated: int
    top1: float
    top5: float
    macro_f1: float
    classes: list[ClassMetrics]
    not_in_model: list[str]
    confusion_labels: list[str]  # the columns (answers); the rows are ``classes``, in order
    confusion: list[list[int]]
    mistakes: list[Mistake]  # the most confident wrong answers first
    # The top-1 confidence against top-1 accuracy, 10 equal-width bins: the scores as the
    # source gives them (the classifier endpoints' probabilities, the index's vote shares) ...
    ece: float
    mce: float
    reliability: Reliability
    # ... and, for a classifier with a calibration file, after its temperature (/v1/identify's).
    ece_calibrated: float | None = None
    reliability_calibrated: Reliability | None = None


def _key(name: str) -> str:
    return " ".join(name.split()).casefold()


def evaluate(predictions: Predictions, truths: list[str], dataset: str) -> EvaluationReport:
    if len(truths) != len(predictions.paths):
        raise ValueError("one truth per photo")
    answerable = {_key(name) for name in predictions.classes}
    spelling = {_key(t): t for t in truths}  # report names as the dataset spells them
    truth_classes = sorted(spelling.values())
    y_true, y_pred, hit1, hit5 = [], [], [], []
    confidence: list[float] = []
    calibrated: list[float] = []
    mistakes: list[Mistake] = []
    calibrated_top1 = predictions.calibrated_top1 or [None] * len(predictions.paths)
    for path, truth, ranked, recalibrated in zip(
        predictions.paths, truths, predictions.ranked, calibrated_top1, strict=True
    ):
        if ranked is None:
            continue
        keys = [_key(name) for name in ranked.names]
        top = keys[0] if keys else ""
        y_true.append(spelling[_key(truth)])
        y_pred.append(spelling.get(top, OTHER))
        hit1.append(top == _key(truth))
        hit5.append(_key(truth) in keys[:5])
        confidence.append(ranked.scores[0] if ranked.scores else 0.0)
        if recalibrated is not None:
            calibrated.append(recalibrated)
        if not hit1[-1]:
            rank = keys.index(_key(truth)) + 1 if _key(truth) in keys else None
            predicted = ranked.names[0] if ranked.names else "(nothing)"
            score = ranked.scores[0] if ranked.scores else 0.0
            mistakes.append(
                Mistake(path=str(path), truth=truth, predicted=predicted, score=score, truth_rank=rank)
            )
    if not y_true:
        raise ValueError("no photo could be read: nothing to evaluate")
    precision, recall, f1, support = precision_recall_fscore_support(
        y_true, y_pred, labels=truth_classes, zero_division=0
    )
    labels = truth_classes + ([OTHER] if OTHER in y_pred else [])
    matrix = confusion_matrix(y_true, y_pred, labels=labels)[: len(truth_classes)]  # no "(other)" truth
    mistakes.sort(key=lambda m: -m.score)
    measured = reliability(confidence, hit1, scores=predictions.source)
    after = None
    if predictions.calibrated_top1 is not None:
        if len(calibrated) != len(hit1):
            raise ValueError("a calibrated confidence for every photo read, or none")
        after = reliability(calibrated, hit1, scores=f"calibrated: {predictions.calibration}")
    return EvaluationReport(
        source=predictions.source,
        dataset=dataset,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        images=len(predictions.paths),
        failed=len(predictions.failures),
        evaluated=len(y_true),
        top1=float(np.mean(hit1)),
        top5=float(np.mean(hit5)),
        macro_f1=float(np.mean(f1)),
        classes=[
            ClassMetrics(
                name=name,
                precision=float(p),
                recall=float(r),
                f1=float(f),
                support=int(s),
                in_model=_key(name) in answerable,
            )
            for name, p, r, f, s in zip(truth_classes, precision, recall, f1, support, strict=True)
        ],
        not_in_model=[name for name in truth_classes if _key(name) not in answerable],
        confusion_labels=labels,
        confusion=matrix.tolist(),
        mistakes=mistakes[:WORST_SHOWN],
        ece=measured.ece,
        mce=measured.mce,
        reliability=measured,
        ece_calibrated=after.ece if after is not None else None,
        reliability_calibrated=after,
    )


def write_report(report: EvaluationReport, predictions: Predictions, out: Path) -> dict[str, Path]:
    from app.training.plots import confusion_png, reliability_png

    out.mkdir(parents=True, exist_ok=True)
    files = {
        "json": out / "report.json",
        "per_class": out / "per_class.csv",
        "predictions": out / "predictions.csv",
        "confusion": out / "confusion.png",
        "reliability": out / "reliability.png",
        "mistakes": out / "mistakes.html",
    }
    files["json"].write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    with files["per_class"].open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["species", "precision", "recall", "f1", "support", "in_model"])
        for c in report.classes:
            writer.writerow(
                [c.name, f"{c.precision:.4f}", f"{c.recall:.4f}", f"{c.f1:.4f}", c.support, c.in_model]
            )
    with files["predictions"].open("w", newline="", encoding="utf-8") as fh:
        write_predictions_csv(predictions, fh)
    confusion_png(
        [c.name for c in report.classes],
        report.confusion_labels,
        np.asarray(report.confusion),
        files["confusion"],
        title=report.source,
    )
    panels = [report.reliability, *([report.reliability_calibrated] if report.reliability_calibrated else [])]
    reliability_png(panels, files["reliability"], title=f"{report.source} on {report.evaluated} photos")
    files["mistakes"].write_text(mistakes_html(report), encoding="utf-8")
    return files


def _thumbnail(path: str) -> str:
    try:
        with Image.open(path) as opened:
            image = opened.convert("RGB")
        image.thumbnail((200, 200))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=80)
    except OSError:
        return ""
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def mistakes_html(report: EvaluationReport) -> str:
    """A self-contained page (thumbnails inlined) of the most confident mistakes."""
    cards = []
    for m in report.mistakes:
        rank = f"truth ranked {m.truth_rank}" if m.truth_rank else "truth not in the top answers"
        cards.append(
            f'<figure><img src="{_thumbnail(m.path)}" alt="{html.escape(Path(m.path).name)}">'
            f"<figcaption><b>truth</b> {html.escape(m.truth)}<br><b>said</b> {html.escape(m.predicted)} "
            f"({m.score:.2f})<br><small>{rank}; {html.escape(Path(m.path).name)}</small>"
            "</figcaption></figure>"
        )
    body = "".join(cards) or "<p>No mistakes.</p>"
    return (
        "<!doctype html><meta charset=utf-8><title>Worst mistakes</title>"
        "<style>body{font-family:sans-serif;margin:1.5em}figure{display:inline-block;width:210px;"
        "vertical-align:top;margin:6px}img{max-width:200px}figcaption{font-size:13px}</style>"
        f"<h1>Most confident mistakes</h1><p>{html.escape(report.source)} on {html.escape(report.dataset)}: "
        f"top-1 {report.top1:.3f}, top-5 {report.top5:.3f}, macro-F1 {report.macro_f1:.3f}, "
        f"ECE {report.ece:.3f} over {report.evaluated} photos.</p>{body}"
    )
