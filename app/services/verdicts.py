"""Per model, what the photos of an observation add up to, and which model to believe.

- photos are combined per model by the mean of their log-probabilities (a product of experts:
  a species must fit every photo), renormalised; the scope signal is the best photo's, each
  photo scored against the species the photos together point to: one clear photo carries a
  blurred one (Leeds observations of 2 and 3 photos: species right 0.967 and 1.000 vs 0.933 for
  the photos alone; plants and no-organism photos grouped in 2s and 3s: still none named);
- the chosen model is the one with the highest scope signal (compared as margins over their
  thresholds when the models use different signals), and it is *accepted* when its signal
  reaches its threshold.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.models.registry import LoadedModel
from app.models.scope import Assessment, ScopeSignal

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class ModelVerdict:
    model: LoadedModel
    signal: ScopeSignal
    scope: float  # the best photo's scope signal, for the combined best species
    threshold: float
    accepted: bool
    background: float | None  # mean background probability over the photos
    probabilities: Array  # [C] the photos combined (calibrated; geo-weighted when applied)
    per_photo: Array  # [P, C] calibrated, per photo
    top: int  # its best species in ``probabilities``


def combine(per_photo: Array) -> Array:
    """Photos -> one distribution: the mean of log-probabilities, renormalised."""
    logs = np.log(np.maximum(per_photo.astype(np.float64), 1e-12)).mean(axis=0)
    logs -= logs.max()
    exp = np.exp(logs)
    return np.asarray(exp / exp.sum(), dtype=np.float32)


def verdict(model: LoadedModel, assessments: list[Assessment], min_score: float) -> ModelVerdict:
    """``min_score``: the threshold of an uncalibrated model (max_probability)."""
    assert model.scope is not None
    per_photo = np.stack([a.probabilities for a in assessments])
    combined = combine(per_photo)
    top = top_species(combined, model.spec.background_index)
    # Each photo against the species the observation points to (for one photo: its own top);
    # the observation is in scope when one photo clearly shows that species.
    scope = float(np.max([model.scope.scope_for(a, top) for a in assessments]))
    threshold = model.scope.threshold if model.scope.threshold is not None else min_score
    backgrounds = [a.background for a in assessments if a.background is not None]
    return ModelVerdict(
        model=model,
        signal=model.scope.signal,
        scope=scope,
        threshold=threshold,
        accepted=scope >= threshold,
        background=float(np.mean(backgrounds)) if backgrounds else None,
        probabilities=combined,
        per_photo=per_photo,
        top=top,
    )


def top_species(probabilities: Array, background_index: int | None) -> int:
    scores = probabilities.copy()
    if background_index is not None:
        scores[background_index] = -1.0
    return int(np.argmax(scores))


def route(verdicts: list[ModelVerdict]) -> tuple[ModelVerdict, str]:
    """The model whose scope fits the photos best, and why, in words."""
    same_signal = len({v.signal for v in verdicts}) == 1
    chosen = max(verdicts, key=(lambda v: v.scope) if same_signal else (lambda v: v.scope - v.threshold))
    others = ", ".join(f"{v.model.name} {v.scope:.3f}" for v in verdicts if v is not chosen)
    relation = ">=" if chosen.accepted else "<"
    fit = f"{chosen.signal} {chosen.scope:.3f} {relation} its threshold {chosen.threshold:.3f}"
    why = f"{chosen.model.name} fits best ({fit})" + (f"; others: {others}" if others else "")
    return chosen, why
