"""How far a model's confidence is from its accuracy: the reliability table and the expected
calibration error (ECE) of the top-1 confidence. numpy only: ``calibrate`` (in the lite image)
uses it too.

Equal-width bins over [0, 1]: the first is [0, 1/B], the others (lo, hi]. In each bin, the
gap is |mean confidence - accuracy|; ECE is the gaps' mean weighted by the bins' photo counts
(Guo et al. 2017, "On Calibration of Modern Neural Networks"), MCE the largest gap of a bin
with photos.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, Field

DEFAULT_BINS = 10


class ReliabilityBin(BaseModel):
    lower: float
    upper: float
    count: int = Field(description="photos whose top-1 confidence falls in the bin")
    confidence: float | None = Field(description="their mean top-1 confidence (None: empty bin)")
    accuracy: float | None = Field(description="the share of them whose top-1 is right (None: empty bin)")


class Reliability(BaseModel):
    scores: str = Field(description="which probabilities: the model's own, or calibrated")
    photos: int
    ece: float = Field(ge=0.0, le=1.0, description="expected calibration error (count-weighted gaps)")
    mce: float = Field(ge=0.0, le=1.0, description="maximum calibration error (the largest bin gap)")
    bins: list[ReliabilityBin]


def reliability(
    confidence: Sequence[float] | np.ndarray,
    correct: Sequence[bool] | np.ndarray,
    *,
    bins: int = DEFAULT_BINS,
    scores: str = "model",
) -> Reliability:
    conf = np.clip(np.asarray(confidence, dtype=np.float64).reshape(-1), 0.0, 1.0)
    right = np.asarray(correct, dtype=bool).reshape(-1)
    if conf.size != right.size:
        raise ValueError("one correctness per confidence")
    if conf.size == 0:
        raise ValueError("no photo: no calibration to measure")
    if bins < 1:
        raise ValueError("at least one bin")
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="left") - 1, 0, bins - 1)  # (lo, hi]; 0 -> first
    table, ece, mce = [], 0.0, 0.0
    for b in range(bins):
        inside = which == b
        count = int(inside.sum())
        mean_conf = float(conf[inside].mean()) if count else None
        accuracy = float(right[inside].mean()) if count else None
        if mean_conf is not None and accuracy is not None:
            gap = abs(mean_conf - accuracy)
            ece += count / conf.size * gap
            mce = max(mce, gap)
        table.append(
            ReliabilityBin(
                lower=float(edges[b]),
                upper=float(edges[b + 1]),
                count=count,
                confidence=mean_conf,
                accuracy=accuracy,
            )
        )
    return Reliability(scores=scores, photos=int(conf.size), ece=min(ece, 1.0), mce=mce, bins=table)
