"""Class probabilities -> ranked species.

The background class is never reported as a species. When it wins, or the best species is
under ``min_score``, the answer is flagged ``no_match`` with the reason; the best guesses are
still listed so a client can show them as such.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

NoMatchReason = Literal["background", "low_confidence"]


@dataclass(frozen=True, slots=True)
class Ranking:
    indices: list[int]
    scores: list[float]
    background_score: float | None
    no_match_reason: NoMatchReason | None

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None


def rank(
    probabilities: npt.NDArray[np.float32],
    *,
    top_k: int,
    background_index: int | None,
    min_score: float,
) -> Ranking:
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    background = None
    species = probs
    if background_index is not None:
        background = float(probs[background_index])
        species = probs.copy()
        species[background_index] = -np.inf
    k = min(top_k, species.size - (background_index is not None))
    # A stable sort (a few microseconds for 2k classes) keeps ties in index order, so the same
    # photo always gets the same list.
    top = np.argsort(-species, kind="stable")[:k]
    scores: list[float] = np.clip(species[top], 0.0, 1.0).tolist()

    reason: NoMatchReason | None = None
    best = scores[0] if scores else 0.0
    if background is not None and background >= best:
        reason = "background"
    elif best < min_score:
        reason = "low_confidence"
    return Ranking(top.tolist(), scores, background, reason)
