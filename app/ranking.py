"""Class probabilities -> ranked species.

The background class is never reported as a species. When it wins, or the best species is
under ``min_score``, the answer is flagged ``no_match`` with the reason; the best guesses are
still listed so a client can show them as such.

A steered answer (``app.services.steering``: a taxon, a species list, a geo filter) lists only
the classes it keeps, by its own scores; whether the background wins stays the model's call on
its raw probabilities (narrowing the species does not make a photo show an organism). When the
kept classes held less than ``min_score`` of the raw probability together, the answer is
``filtered_out``: renormalised, their scores can look confident, yet the photo looks like none of
them (a dragonfly under ``taxon=Vanessa``); they are listed as guesses, as for ``low_confidence``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

NoMatchReason = Literal["background", "low_confidence", "filtered_out"]


@dataclass(frozen=True, slots=True)
class Ranking:
    indices: list[int]
    scores: list[float]
    background_score: float | None
    no_match_reason: NoMatchReason | None

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None


def filtered_out(
    probabilities: npt.NDArray[np.floating], keep: npt.NDArray[np.bool_], min_score: float
) -> bool:
    """The kept classes held less than ``min_score`` of the model's raw probability together."""
    return float(np.asarray(probabilities, np.float64)[keep].sum()) < min_score


def rank(
    probabilities: npt.NDArray[np.float32],
    *,
    top_k: int,
    background_index: int | None,
    min_score: float,
    scores: npt.NDArray[np.floating] | None = None,
    keep: npt.NDArray[np.bool_] | None = None,
) -> Ranking:
    """``scores`` and ``keep``: a steered answer's final scores and the classes it may list
    (both per class of the model); without them, ``probabilities`` are listed, every species."""
    probs = np.asarray(probabilities, dtype=np.float64).reshape(-1)
    listed = probs if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    kept = np.ones(probs.size, dtype=bool) if keep is None else np.asarray(keep, dtype=bool).copy()
    background = None
    if background_index is not None:
        background = float(probs[background_index])
        kept[background_index] = False
    # A kept class without any probability is no guess; unsteered, every species is listed.
    allowed = kept & (listed > 0) if keep is not None else kept
    species = np.where(allowed, listed, -np.inf)
    k = min(top_k, int(allowed.sum()))
    # A stable sort (a few microseconds for 2k classes) keeps ties in index order, so the same
    # photo always gets the same list.
    top = np.argsort(-species, kind="stable")[:k]
    ranked: list[float] = np.clip(species[top], 0.0, 1.0).tolist()

    reason: NoMatchReason | None = None
    best = ranked[0] if ranked else 0.0
    # The background against the model's own best species, whatever the filters keep.
    others = np.delete(probs, background_index) if background_index is not None else probs
    rival = float(others.max()) if others.size else 0.0
    if background is not None and background >= rival:
        reason = "background"
    elif keep is not None and (not ranked or filtered_out(probs, kept, min_score)):
        reason = "filtered_out"
    elif best < min_score:
        reason = "low_confidence"
    return Ranking(top.tolist(), ranked, background, reason)
