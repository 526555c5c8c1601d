from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class ClassWeights:
    """A classifier's final-layer weights, one row per class, as stored (uint8 for the AIY
    models): ``row - zero_point`` is proportional to the real row, which is all a cosine needs."""

    rows: npt.NDArray[np.generic]  # [classes, features]
    zero_point: float


@runtime_checkable
class FeatureBackend(Protocol):
    """A backend that can also give a classifier's pre-logit features from the same call, and
    its class weights (the open-set signal, ``app.models.scope``)."""

    @property
    def class_weights(self) -> ClassWeights | None: ...

    def predict_with_features(
        self, batch: npt.NDArray[np.generic]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]: ...


class BackendError(Exception):
    """A model file could not be loaded or does not fit its manifest entry."""


class Backend(Protocol):
    """The contract every runtime meets.

    ``predict`` takes ``[N, H, W, 3]`` in the manifest's input dtype and returns ``[N, D]``
    float32: class probabilities (or logits) for a classifier, features for an embedder. It
    must be safe to call from several worker threads at once.
    """

    @property
    def output_dim(self) -> int: ...

    def predict(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]: ...

    def close(self) -> None: ...
