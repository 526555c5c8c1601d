"""Nearest neighbours -> species scores.

Each of the k neighbours votes for its species with weight ``exp((s - s_max) / T)``, ``s`` its
cosine similarity: near neighbours count more, a neighbour at distance 0 (``s = 1``) is as
finite as any other, and the scores, normalised over the k votes, lie in [0, 1] and sum to 1
over all species (to at most 1 over the ``top_k`` returned).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from app.index.artifacts import SpeciesIndex


@dataclass(frozen=True, slots=True)
class SpeciesVote:
    label: int
    score: float
    neighbours: int  # how many of the k neighbours are this species
    similarity: float  # cosine similarity of its nearest photo


def vote(
    similarities: npt.NDArray[np.float32],
    rows: npt.NDArray[np.int64],
    row_labels: npt.NDArray[np.int32],
    *,
    top_k: int,
    temperature: float,
) -> list[SpeciesVote]:
    valid = rows >= 0  # FAISS pads with -1 when the index holds fewer than k vectors
    sims = np.asarray(similarities[valid], dtype=np.float64)
    if sims.size == 0:
        return []
    labels = row_labels[rows[valid]]
    weights = np.exp((sims - sims.max()) / temperature)
    weights /= weights.sum()
    species, inverse = np.unique(labels, return_inverse=True)
    scores = np.bincount(inverse, weights=weights)
    counts = np.bincount(inverse)
    best = np.full(len(species), -np.inf)
    np.maximum.at(best, inverse, sims)
    # Highest score first; ties by nearest photo, then label id, so answers are repeatable.
    order = np.lexsort((species, -best, -scores))[:top_k]
    return [
        SpeciesVote(int(species[i]), float(min(scores[i], 1.0)), int(counts[i]), float(best[i]))
        for i in order
    ]


def query(
    index: SpeciesIndex,
    features: npt.NDArray[np.float32],
    *,
    neighbours: int,
    ef_search: int,
    temperature: float,
    top_k: int,
) -> list[list[SpeciesVote]]:
    """Embedder features [N, D] -> project -> k nearest photos -> species votes, per photo: what
    /img_url answers (one photo) and what ``evaluate --index`` scores (many)."""
    sims, rows = index.search(index.project(features), neighbours, ef_search)
    return [
        vote(sims[i], rows[i], index.rows, top_k=top_k, temperature=temperature) for i in range(len(features))
    ]


def merge(per_photo: list[list[SpeciesVote]]) -> list[SpeciesVote]:
    """Several photos of one organism: each species' mean share of the votes (0 from a photo
    whose neighbours lack it), its neighbours summed, its nearest photo over all; best first."""
    if not per_photo:
        return []
    shares: dict[int, list[float]] = {}
    counts: dict[int, int] = {}
    nearest: dict[int, float] = {}
    for votes in per_photo:
        for v in votes:
            shares.setdefault(v.label, []).append(v.score)
            counts[v.label] = counts.get(v.label, 0) + v.neighbours
            nearest[v.label] = max(nearest.get(v.label, -1.0), v.similarity)
    merged = [
        SpeciesVote(label, min(sum(s) / len(per_photo), 1.0), counts[label], nearest[label])
        for label, s in shares.items()
    ]
    return sorted(merged, key=lambda v: (-v.score, -v.similarity, v.label))
