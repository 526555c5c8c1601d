"""identification.decide on crafted probabilities: what an answer lists and why there is no match.

The classifier endpoints' contract (``kind="model"``: the model's own probabilities): the top_k
species by raw probability, zeros included, ties in label order; never the background class;
``not_an_organism`` when the background holds at least the best species' probability;
``low_confidence`` when the best is under min_score (``filtered_out`` under a filter:
tests/identification/test_plan_and_steer.py). Calibrated answers list no species the model gave
nothing, nor one under 1/1000 of the best one's. ``top_k_species`` is what evaluation and
saliency rank by."""

from __future__ import annotations

import numpy as np
import pytest

from app.enrich.taxonomies import Taxonomy
from app.identification.decide import (
    NOISE_RATIO,
    Decision,
    ModelVerdict,
    decide,
    listed,
    top_k_species,
    verdict,
)
from app.identification.plan import Plan
from app.identification.request import ScoreKind, Steering
from app.identification.steer import GeoOutcome, Steered
from app.models.loaded import LoadedModel
from tests.services.helpers import crafted_model

NO_TAXONOMY: Taxonomy = {}


def model_of(classes: int, background: int | None) -> LoadedModel:
    """An uncalibrated classifier of ``classes`` labels (the scope signal: max probability)."""
    return crafted_model(classes=[f"Genus species{i}" for i in range(classes)], background=background)


def unsteered(probabilities: np.ndarray) -> Steered:
    """Scores as they are: no filter, no place."""
    return Steered(probabilities, probabilities, None, None, GeoOutcome.not_requested(False))


def decided(
    probabilities: list[float] | np.ndarray,
    *,
    top_k: int,
    background: int | None,
    min_score: float,
    kind: ScoreKind = "model",
) -> tuple[Decision, ModelVerdict]:
    """One photo's output through ``verdict`` and ``decide`` as the service runs them, unsteered."""
    p = np.asarray(probabilities, dtype=np.float32)
    model = model_of(p.size, background)
    assert model.scope is not None
    found = verdict(model, [model.scope.assess(p, None)], min_score, kind)
    plan = Plan([model], Steering(), min_score, 0.8)
    steered = unsteered(found.probabilities)
    return decide(found, [found], plan, NO_TAXONOMY, top_k, steered, kind), found


def test_background_is_never_listed_and_says_not_an_organism_when_it_wins():
    decision, found = decided([0.1, 0.2, 0.7], top_k=5, background=2, min_score=0.05)
    assert decision.species == [1, 0]
    assert decision.no_match_reason == "not_an_organism"
    assert not found.accepted and found.background == pytest.approx(0.7)


def test_a_background_as_probable_as_the_best_species_is_no_organism():
    decision, found = decided([0.45, 0.1, 0.45], top_k=5, background=2, min_score=0.1)
    assert decision.no_match_reason == "not_an_organism" and decision.species == [0, 1]
    assert not found.accepted  # a tie is the background's
    below, _ = decided([0.46, 0.1, 0.44], top_k=5, background=2, min_score=0.1)
    assert below.no_match_reason is None and below.species == [0, 1]


def test_low_confidence_is_flagged():
    decision, _ = decided([0.05, 0.04, 0.01, 0.9], top_k=2, background=None, min_score=0.1)
    assert decision.species == [3, 0] and decision.no_match_reason is None
    flat, _ = decided(np.full(100, 0.01), top_k=3, background=None, min_score=0.1)
    assert flat.no_match_reason == "low_confidence" and flat.species == [0, 1, 2]  # still listed


def test_ties_are_ordered_by_index_and_top_k_is_bounded():
    probs = np.zeros(10, np.float32)
    probs[7] = 0.5
    decision, _ = decided(probs, top_k=4, background=9, min_score=0.1)
    assert decision.species == [7, 0, 1, 2]  # the model's own answer lists its zeros too
    everything, _ = decided(probs, top_k=100, background=9, min_score=0.1)
    assert len(everything.species) == 9 and 9 not in everything.species


def test_listed_is_the_same_ranking_without_a_verdict():
    probs = np.array([0.1, 0.0, 0.3, 0.3, 0.2], np.float32)
    steered = unsteered(probs)
    assert listed(steered, 4, top_k=3) == [2, 3, 0]
    assert listed(steered, None, top_k=10) == [2, 3, 4, 0, 1]
    assert listed(steered, 4, top_k=10) == [2, 3, 0, 1]  # a zero is listed, the background never


def test_a_calibrated_answer_lists_no_species_the_model_gave_nothing_nor_noise():
    """The support (what the model gave any probability) and NOISE_RATIO of the best one."""
    scores = np.array([0.6, 0.3, 0.0999, 0.0007, 0.0005, 0.0], np.float32)
    steered = unsteered(scores)
    support = np.array([True, True, False, True, True, True])
    assert listed(steered, 5, top_k=10, support=support) == [0, 1, 3]  # 2: zero in the model's output
    assert 0.0007 >= 0.6 * NOISE_RATIO > 0.0005  # 4 is under 1/1000 of the best one
    assert listed(steered, 5, top_k=10) == [0, 1, 2, 3, 4]  # the model's own answer: all but background


def test_top_k_species_ranks_an_output_without_its_background():
    probs = np.array([0.1, 0.2, 0.2, 0.5, 0.0], np.float32)
    indices, scores = top_k_species(probs, 3, background_index=3)
    assert indices == [1, 2, 0] and scores == pytest.approx([0.2, 0.2, 0.1])
    assert top_k_species(probs, 10, background_index=3)[0] == [1, 2, 0, 4]  # bounded by the species
    assert top_k_species(probs, 2, background_index=None)[0] == [3, 1]
