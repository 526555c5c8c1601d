from __future__ import annotations

from typing import Protocol

import numpy as np
import numpy.typing as npt


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
