"""Numeric helpers shared by serving, indexing and training (one copy each)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def l2_normalize(vectors: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Rows to unit length; an all-zero row stays zero instead of dividing by zero."""
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.asarray(vectors / np.maximum(norms, 1e-12), dtype=np.float32)


def softmax(logits: npt.NDArray[np.floating]) -> npt.NDArray[np.float32]:
    """Row-wise, shifted by the row maximum so large logits cannot overflow."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: npt.NDArray[np.float32] = np.asarray(exp / exp.sum(axis=1, keepdims=True), dtype=np.float32)
    return out
