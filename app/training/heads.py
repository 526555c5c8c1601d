"""Transfer learning on frozen embeddings: a new classifier the server can serve.

The embedder stays fixed; a logistic regression (default) or a small dense network learns the
user's classes from its features. Stratified train/validation split by photo (augmented copies
of a validation photo never reach training), class weights against imbalance, early stopping
for the dense head. The result is exported to plain arrays (``HeadWeights``), and the
validation figures are computed through that export, i.e. through exactly what the server runs.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.utils.class_weight import compute_sample_weight

from app.core.numeric import l2_normalize, softmax
from app.index.artifacts import EmbedderIdentity
from app.models.backends.head import HeadWeights, sidecar

HeadKind = Literal["logistic", "dense"]
Array = npt.NDArray[np.float32]


@dataclass
class TrainedHead:
    weights: HeadWeights
    classes: list[str]
    kind: HeadKind
    train_rows: npt.NDArray[np.int64]  # into the photos given
    val_rows: npt.NDArray[np.int64]
    val_probabilities: Array  # [n_val, classes], through the exported weights
    train_accuracy: float
    val_accuracy: float
    n_augmented: int
    iterations: int


def split(
    labels: list[str], val_fraction: float, seed: int
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """Stratified by species, and every species on both sides (so every species' accuracy is
    measured): ``val_fraction`` of each, at least one, never all."""
    by_name: dict[str, list[int]] = {}
    for row, name in enumerate(labels):
        by_name.setdefault(name, []).append(row)
    few = [name for name, rows in by_name.items() if len(rows) < 2]
    if few:
        raise ValueError(f"species with fewer than 2 photos cannot be split: {', '.join(sorted(few)[:10])}")
    rng = np.random.default_rng(seed)
    val: list[int] = []
    for name in sorted(by_name):
        rows = by_name[name]
        n_val = min(len(rows) - 1, max(1, round(len(rows) * val_fraction)))
        val.extend(rng.permutation(rows)[:n_val].tolist())
    chosen = np.zeros(len(labels), dtype=bool)
    chosen[val] = True
    return np.flatnonzero(~chosen), np.flatnonzero(chosen)


def _standardiser(x: Array) -> tuple[Array, Array]:
    mean = x.mean(axis=0).astype(np.float32)
    scale = x.std(axis=0).astype(np.float32)
    scale[scale < 1e-6] = 1.0  # a feature that never varies (a dead ReLU) is left as it is
    return mean, scale


def _binary_as_two(weights: Array, bias: Array) -> tuple[Array, Array]:
    # scikit-learn keeps one logit for two classes: softmax([0, z]) == sigmoid(z).
    return (
        np.concatenate([np.zeros_like(weights), weights], axis=1),
        np.concatenate([np.zeros_like(bias), bias]),
    )


def fit(
    train_x: Array, train_y: npt.NDArray[np.int64], *, kind: HeadKind, hidden: int, seed: int
) -> tuple[HeadWeights, int]:
    unit = l2_normalize(train_x)  # as HeadWeights.logits does before standardising
    mean, scale = _standardiser(unit)
    x = (unit - mean) / scale
    layers: list[tuple[Array, Array]]
    if kind == "logistic":
        model = LogisticRegression(C=1.0, max_iter=3000, class_weight="balanced")
        model.fit(x, train_y)
        w, b = model.coef_.T.astype(np.float32), model.intercept_.astype(np.float32)
        layers = [_binary_as_two(w, b) if w.shape[1] == 1 else (w, b)]
        iterations = int(np.max(model.n_iter_))
    else:
        model = MLPClassifier(
            hidden_layer_sizes=(hidden,),
            alpha=1e-3,
            early_stopping=True,
            validation_fraction=0.15,
            n_iter_no_change=15,
            max_iter=500,
            random_state=seed,
        )
        model.fit(x, train_y, sample_weight=compute_sample_weight("balanced", train_y))
        layers = [
            (w.astype(np.float32), b.astype(np.float32))
            for w, b in zip(model.coefs_, model.intercepts_, strict=True)
        ]
        if layers[-1][0].shape[1] == 1:
            layers[-1] = _binary_as_two(*layers[-1])
        iterations = int(model.n_iter_)
    return HeadWeights(mean, scale, layers), iterations


def train_head(
    features: Array,
    labels: list[str],
    *,
    kind: HeadKind = "logistic",
    val_fraction: float = 0.2,
    seed: int = 0,
    hidden: int = 256,
    augmented: list[Array] | None = None,
) -> TrainedHead:
    """``features[i]`` is photo i's embedding; ``augmented`` holds, per augmentation, the
    embeddings of every photo's augmented copy (same rows): only training rows are used."""
    classes = sorted(set(labels))
    y = np.array([classes.index(name) for name in labels], dtype=np.int64)
    train_rows, val_rows = split(labels, val_fraction, seed)
    train_x = np.concatenate([features[train_rows], *(a[train_rows] for a in augmented or [])])
    train_y = np.tile(y[train_rows], 1 + len(augmented or []))
    weights, iterations = fit(train_x, train_y, kind=kind, hidden=hidden, seed=seed)
    val_probabilities = softmax(weights.logits(features[val_rows]))
    train_hits = weights.logits(features[train_rows]).argmax(axis=1) == y[train_rows]
    return TrainedHead(
        weights=weights,
        classes=classes,
        kind=kind,
        train_rows=train_rows,
        val_rows=val_rows,
        val_probabilities=val_probabilities,
        train_accuracy=float(train_hits.mean()),
        val_accuracy=float((val_probabilities.argmax(axis=1) == y[val_rows]).mean()),
        n_augmented=len(train_x) - len(train_rows),
        iterations=iterations,
    )


def save_head(
    trained: TrainedHead,
    directory: Path,
    *,
    embedder: EmbedderIdentity,
    dataset: str,
    augment: list[str],
    common_names: dict[str, str | None],
) -> Path:
    """``head.npz`` (arrays only), ``head.json`` (the embedder it needs, how it was trained) and
    ``labels.csv``; returns the .npz path."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "head.npz"
    partial = directory / "head.partial.npz"
    trained.weights.save(partial)
    meta = {
        "format": 1,
        "embedder": embedder.model_dump(mode="json"),
        "kind": trained.kind,
        "classes": len(trained.classes),
        "dataset": dataset,
        "augment": augment,
        "photos": {
            "train": len(trained.train_rows),
            "validation": len(trained.val_rows),
            "augmented": trained.n_augmented,
        },
        "accuracy": {"train": trained.train_accuracy, "validation": trained.val_accuracy},
        "iterations": trained.iterations,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    sidecar(path).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    with (directory / "labels.csv").open("w", encoding="utf-8", newline="") as fh:
        import csv

        writer = csv.writer(fh)
        writer.writerow(["id", "name", "common_name"])
        for i, name in enumerate(trained.classes):
            writer.writerow([i, name, common_names.get(name) or ""])
    partial.replace(path)  # the weights last: a reload never sees new labels with old weights
    return path
