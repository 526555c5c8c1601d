"""Stage 4, decide. In: each model's outputs on the photos (``run``), then the chosen model's
steered scores (``steer``). Out: per model a ``ModelVerdict`` (the photos combined, its scope),
the model to believe, and a ``Decision``: the ranked species, why there is no match, the rollup.
One vocabulary of no-match reasons for every way in:

- ``not_an_organism``: the photos show no organism any model knows (its background class wins;
  the classifier endpoints say ``background``);
- ``out_of_scope``: an organism, but of no model's kind (calibrated answers only);
- ``filtered_out``: the taxon/list/geo filters keep species that held less than ``min_score``
  of the probability together: renormalised they could look sure, yet the photos look like none
  of them (a dragonfly under ``taxon=Vanessa``);
- ``low_confidence``: the best species is under ``min_score``; its guesses and the rollup are
  listed as such.

Two ways to score (``ScoreKind``, chosen by the request):

- ``calibrated`` (/v1/identify): each photo's probabilities are temperature-scaled, the photos
  combined by the mean of their log-probabilities (a product of experts: a species must fit
  every photo; Leeds observations of 2 and 3 photos: species right 0.967 and 1.000 against 0.933
  for the photos alone), and a model *accepts* the photos when its scope signal (the best
  photo's, for the species the photos point to; ``app.models.scope``) reaches its threshold. The
  model with the best scope is chosen; when it does not accept, nothing is named. No species is
  listed that the model gave no probability, or that holds under 1/1000 of the best one's: a
  quantized model's zeros turn into equal tiny values under the calibration, and label order
  would rank them.
- ``model`` (the classifier endpoints): the model's own output; it accepts the photo unless its
  background class holds at least as much as its best species. Its guesses are listed anyway:
  the caller named this model.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.enrich.taxonomies import Taxonomy
from app.enrich.taxonomy import ROLLUP_RANKS, Rollup, rollup
from app.identification.plan import Mask, Plan, ResolvedTaxon
from app.identification.request import ScoreKind
from app.identification.steer import Steered
from app.models.registry import LoadedModel
from app.models.scope import Assessment, ScopeSignal

Array = npt.NDArray[np.float32]
NoMatchReason = Literal["not_an_organism", "out_of_scope", "low_confidence", "filtered_out"]

NOT_AN_ORGANISM_BACKGROUND = 0.5  # every model's background class at least this: no organism
NOISE_RATIO = 1e-3  # calibrated answers list no species under this share of the best one
CALIBRATED_ROLLUP_FLOOR = 1e-4  # calibrated species under this do not count toward a rollup


# --- per model: the photos combined, and whether it knows what they show ---------------------


@dataclass(frozen=True)
class ModelVerdict:
    model: LoadedModel
    signal: ScopeSignal
    scope: float  # the best photo's scope signal, for the combined best species
    threshold: float
    accepted: bool
    background: float | None  # mean background probability over the photos (the model's own)
    probabilities: Array  # [C] the photos combined, in the request's kind of score
    per_photo: Array  # [P, C] the same, per photo
    support: Mask  # [C] the model gave the class some probability in some photo
    top: int  # its best species in ``probabilities``


def combine(per_photo: Array) -> Array:
    """Photos -> one distribution: the mean of log-probabilities, renormalised (one photo is
    itself: the log would turn its zeros into tiny values)."""
    if len(per_photo) == 1:
        return np.asarray(per_photo[0], dtype=np.float32)
    logs = np.log(np.maximum(per_photo.astype(np.float64), 1e-12)).mean(axis=0)
    logs -= logs.max()
    exp = np.exp(logs)
    return np.asarray(exp / exp.sum(), dtype=np.float32)


def top_species(probabilities: Array, background_index: int | None) -> int:
    scores = np.array(probabilities, dtype=np.float32)
    if background_index is not None:
        scores[background_index] = -1.0
    return int(np.argmax(scores))


def verdict(
    model: LoadedModel, assessments: list[Assessment], min_score: float, kind: ScoreKind
) -> ModelVerdict:
    """``assessments``: each photo's (``ModelScope.assess``, calibrated for a calibrated answer);
    ``min_score``: the scope threshold of an uncalibrated model (max_probability)."""
    assert model.scope is not None
    raw = np.stack([a.raw for a in assessments])
    per_photo = np.stack([a.probabilities for a in assessments]) if kind == "calibrated" else raw
    combined = combine(per_photo)
    top = top_species(combined, model.spec.background_index)
    backgrounds = [a.background for a in assessments if a.background is not None]
    background = float(np.mean(backgrounds)) if backgrounds else None
    if kind == "calibrated":
        # Each photo against the species the observation points to (for one photo: its own
        # top); the observation is in scope when one photo clearly shows that species.
        signal = model.scope.signal
        scope = float(np.max([model.scope.scope_for(a, top) for a in assessments]))
        threshold = model.scope.threshold if model.scope.threshold is not None else min_score
        accepted = scope >= threshold
    else:  # the model's own call: its background class against its best species
        signal, scope, threshold = "max_probability", float(combined[top]), min_score
        accepted = background is None or background < scope
    return ModelVerdict(
        model=model,
        signal=signal,
        scope=scope,
        threshold=threshold,
        accepted=accepted,
        background=background,
        probabilities=combined,
        per_photo=per_photo,
        support=np.asarray((raw > 0).any(axis=0), dtype=bool),
        top=top,
    )


def calibrated_view(found: ModelVerdict) -> Array:
    """A model-kind verdict's photos, calibrated and combined: what a place weighs (``steer``).
    A class the model gave nothing stays at 0 (the calibration's floor is no evidence), so the
    model's own answer lists no more species with a place than without."""
    assert found.model.scope is not None
    combined = combine(np.stack([found.model.scope.calibrated(row) for row in found.per_photo]))
    return np.where(found.support, combined, np.float32(0.0)).astype(np.float32)


def route(verdicts: list[ModelVerdict]) -> tuple[ModelVerdict, str]:
    """The model whose scope fits the photos best, and why, in words."""
    same_signal = len({v.signal for v in verdicts}) == 1
    chosen = max(verdicts, key=(lambda v: v.scope) if same_signal else (lambda v: v.scope - v.threshold))
    others = ", ".join(f"{v.model.name} {v.scope:.3f}" for v in verdicts if v is not chosen)
    relation = ">=" if chosen.scope >= chosen.threshold else "<"
    fit = f"{chosen.signal} {chosen.scope:.3f} {relation} its threshold {chosen.threshold:.3f}"
    why = f"{chosen.model.name} fits best ({fit})" + (f"; others: {others}" if others else "")
    return chosen, why


# --- the chosen model's answer ---------------------------------------------------------------


@dataclass(frozen=True)
class Decision:
    species: list[int]  # class indices of the chosen model, best first
    no_match_reason: NoMatchReason | None
    rollup: Rollup | None


def decide(
    chosen: ModelVerdict,
    verdicts: list[ModelVerdict],
    plan: Plan,
    taxonomy: Taxonomy,
    top_k: int,
    steered: Steered | None,
    kind: ScoreKind,
) -> Decision:
    """``steered``: the chosen model's scores after the filters and the place (None: no model
    accepted the photos, and a calibrated answer names nothing)."""
    if not chosen.accepted:
        organism = any(v.background is None or v.background < NOT_AN_ORGANISM_BACKGROUND for v in verdicts)
        reason: NoMatchReason = "out_of_scope" if organism and kind == "calibrated" else "not_an_organism"
        if steered is None:
            return Decision([], reason, None)
    assert steered is not None
    model = chosen.model
    support = chosen.support if kind == "calibrated" else None
    species = listed(steered, model.spec.background_index, top_k, support)
    summed = answer_rollup(steered, model, taxonomy, plan.rollup_threshold, plan.taxon, support)
    if not chosen.accepted:
        return Decision(species, reason, summed)
    keep = steered.keep
    if keep is not None and (not species or filtered_out(chosen.probabilities, keep, plan.min_score)):
        return Decision(species, "filtered_out", summed)
    confident = bool(species) and float(steered.scores[species[0]]) >= plan.min_score
    return Decision(species, None if confident else "low_confidence", summed)


def listed(steered: Steered, background: int | None, top_k: int, support: Mask | None = None) -> list[int]:
    """The species an answer lists, best first: never the background class; under a filter, only
    the kept species holding any probability (a geo filter leaves the unrecorded at 0: they are
    no guesses); with ``support`` (calibrated answers), only what the model gave any probability
    and at least ``NOISE_RATIO`` of the best one's. Ties keep label order (a stable sort: the
    same photo always gets the same list)."""
    scores = np.asarray(steered.scores, dtype=np.float64)
    allowed = np.ones(scores.size, dtype=bool) if steered.keep is None else steered.keep & (scores > 0)
    if background is not None:
        allowed[background] = False
    if support is not None:
        allowed &= support
        if allowed.any():
            allowed &= scores >= scores[allowed].max() * NOISE_RATIO
    order = np.argsort(-np.where(allowed, scores, -np.inf), kind="stable")
    return [int(i) for i in order[: min(top_k, int(allowed.sum()))]]


def filtered_out(probabilities: Array, keep: Mask, min_score: float) -> bool:
    """The kept classes held less than ``min_score`` of the model's probability together."""
    return float(np.asarray(probabilities, np.float64)[keep].sum()) < min_score


def top_k_species(
    probabilities: Array, top_k: int, background_index: int | None
) -> tuple[list[int], list[float]]:
    """The ``top_k`` classes of one output and their probabilities, never the background class:
    what evaluation and saliency rank by."""
    scores = np.asarray(probabilities, dtype=np.float64).reshape(-1).copy()
    count = scores.size
    if background_index is not None:
        scores[background_index] = -np.inf
        count -= 1
    order = np.argsort(-scores, kind="stable")[: min(top_k, count)]
    return order.tolist(), np.clip(scores[order], 0.0, 1.0).tolist()


# --- the rollup ------------------------------------------------------------------------------


def answer_rollup(
    steered: Steered,
    model: LoadedModel,
    taxonomy: Taxonomy,
    threshold: float,
    taxon: ResolvedTaxon | None,
    support: Mask | None = None,
) -> Rollup | None:
    """The taxon an answer reports when no species is confident: geo=filter's recorded ancestor,
    else the deepest taxon whose kept species reach ``threshold`` together (over every class
    with a score, not just the listed ones; with ``support``, those the model gave any
    probability); never the filter's own taxon or above (``below_filter``)."""
    scores, keep, background = steered.scores, steered.keep, model.spec.background_index
    counted = scores > 0
    if support is not None:  # calibrated: the model's zeros are tiny values now; not evidence
        counted &= support & (scores > CALIBRATED_ROLLUP_FLOOR)
    found = steered.rollup or rollup(
        (
            (model.labels[i].scientific_name, float(scores[i]))
            for i in np.flatnonzero(counted)
            if i != background and (keep is None or keep[i])
        ),
        taxonomy,
        threshold,
    )
    return below_filter(found, taxon)


def below_filter(found: Rollup | None, taxon: ResolvedTaxon | None) -> Rollup | None:
    """A rollup to the filter's own taxon or above says nothing: renormalised, the kept species
    sum to 1 there by construction (taxon=Vanessa would always "roll up" to genus Vanessa)."""
    if found is None or taxon is None or found.reason is not None:
        return found
    if taxon.rank not in ROLLUP_RANKS:
        return None  # a species filter: every taxon above it holds it all
    return found if ROLLUP_RANKS.index(found.rank) < ROLLUP_RANKS.index(taxon.rank) else None
