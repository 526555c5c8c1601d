"""A classifier head over an embedder's features: what ``python -m app train-head`` saves.

The head is plain arrays in an ``.npz`` (loaded with ``allow_pickle=False``) and a JSON sidecar
naming the embedder it was trained on. Forward pass: L2-normalise the features, standardise
with the training mean and scale, then dense layers with ReLU between them; the last layer
gives logits (the manifest entry says ``output = "logits"``, so the registry applies softmax).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.models.backends.base import BackendError

Array = npt.NDArray[np.float32]


def sidecar(path: Path) -> Path:
    """``head.npz`` -> ``head.json``: the embedder the head was trained on, and how."""
    return path.with_suffix(".json")


@dataclass(frozen=True)
class HeadWeights:
    mean: Array  # [D]
    scale: Array  # [D]
    layers: list[tuple[Array, Array]]  # (W [in, out], b [out]), the last one gives logits

    @property
    def input_dim(self) -> int:
        return int(self.mean.shape[0])

    @property
    def output_dim(self) -> int:
        return int(self.layers[-1][1].shape[0])

    def logits(self, features: npt.NDArray[np.floating[Any]]) -> Array:
        x = np.asarray(features, dtype=np.float32)
        x = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), np.float32(1e-12))
        x = (x - self.mean) / self.scale
        for i, (weights, bias) in enumerate(self.layers):
            x = x @ weights + bias
            if i < len(self.layers) - 1:
                np.maximum(x, 0.0, out=x)
        out: Array = x.astype(np.float32, copy=False)
        return out

    def save(self, path: Path) -> None:
        arrays: dict[str, Array] = {"mean": self.mean, "scale": self.scale}
        for i, (weights, bias) in enumerate(self.layers):
            arrays[f"w{i}"], arrays[f"b{i}"] = weights, bias
        with path.open("wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: Path) -> HeadWeights:
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: np.asarray(data[key], dtype=np.float32) for key in data.files}
        except (OSError, ValueError) as exc:
            raise BackendError(f"{path} is not a head's .npz: {exc}") from exc
        layers: list[tuple[Array, Array]] = []
        while f"w{len(layers)}" in arrays:
            i = len(layers)
            layers.append((arrays[f"w{i}"], arrays[f"b{i}"]))
        if "mean" not in arrays or "scale" not in arrays or not layers:
            raise BackendError(f"{path} lacks mean, scale or layers w0/b0")
        weights = cls(arrays["mean"], arrays["scale"], layers)
        width = weights.input_dim
        for w, b in layers:
            if w.ndim != 2 or w.shape[0] != width or b.shape != (w.shape[1],):
                raise BackendError(f"{path}: layer shapes do not chain ({w.shape}, {b.shape} after {width})")
            width = w.shape[1]
        return weights


class HeadBackend:
    """Runs the embedder, then the head; safe from several threads (the head is read-only)."""

    def __init__(
        self,
        path: Path,
        *,
        embedder_name: str,
        embedder_sha256: str | None,
        embedder_dim: int,
        features: Callable[[npt.NDArray[np.generic]], Array],
    ) -> None:
        self._weights = HeadWeights.load(path)
        trained_on: dict[str, Any] = {}
        if sidecar(path).exists():
            trained_on = json.loads(sidecar(path).read_text(encoding="utf-8")).get("embedder", {})
        if trained_on.get("name", embedder_name) != embedder_name:
            raise BackendError(f"head trained on {trained_on['name']!r}, manifest says {embedder_name!r}")
        recorded = trained_on.get("sha256")
        if recorded and embedder_sha256 and recorded != embedder_sha256:
            # Features of another embedder version are a different space: the head's answers
            # would be confident nonsense. Refuse rather than serve them.
            raise BackendError(
                f"head trained on {embedder_name} sha256 {recorded[:12]}..., but the loaded "
                f"{embedder_name} is {embedder_sha256[:12]}...: retrain the head"
            )
        if self._weights.input_dim != embedder_dim:
            raise BackendError(
                f"head takes {self._weights.input_dim}-d features, {embedder_name} gives {embedder_dim}"
            )
        self._features = features

    @property
    def output_dim(self) -> int:
        return self._weights.output_dim

    def predict(self, batch: npt.NDArray[np.generic]) -> Array:
        return self._weights.logits(self._features(batch))

    def close(self) -> None:
        pass
