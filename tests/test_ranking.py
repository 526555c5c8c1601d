from __future__ import annotations

import numpy as np

from app.ranking import rank


def test_background_is_never_ranked_and_flags_no_match_when_it_wins():
    probs = np.array([0.1, 0.2, 0.7], np.float32)
    result = rank(probs, top_k=5, background_index=2, min_score=0.05)
    assert result.indices == [1, 0]
    assert result.no_match and result.no_match_reason == "background"
    assert result.background_score is not None and abs(result.background_score - 0.7) < 1e-6


def test_low_confidence_is_flagged():
    probs = np.array([0.05, 0.04, 0.01, 0.9], np.float32)
    result = rank(probs, top_k=2, background_index=None, min_score=0.1)
    assert result.indices == [3, 0] and not result.no_match
    flat = np.full(100, 0.01, np.float32)
    assert rank(flat, top_k=3, background_index=None, min_score=0.1).no_match_reason == "low_confidence"


def test_ties_are_ordered_by_index_and_top_k_is_bounded():
    probs = np.zeros(10, np.float32)
    probs[7] = 0.5
    result = rank(probs, top_k=4, background_index=9, min_score=0.1)
    assert result.indices == [7, 0, 1, 2]
    assert len(rank(probs, top_k=100, background_index=9, min_score=0.1).indices) == 9
