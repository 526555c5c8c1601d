"""services.predictions: many answers as ranked names (what ``classify FOLDER`` writes and
``evaluate`` scores), from a classifier's and from the index's answers (runs without ../shared)."""

from __future__ import annotations

import io
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.core import InputSpec, Label
from app.enrich.taxonomies import TaxonomyBook
from app.identification.answer import FileAnswers
from app.identification.lookup import FileLookups, Lookup
from app.index.artifacts import EmbedderIdentity, IndexManifest, SpeciesIndex
from app.index.vote import SpeciesVote
from app.services.predictions import predictions_of_index, predictions_of_model
from app.settings import IndexSettings, RankingSettings
from app.training.predictions import write_predictions_csv
from tests.services.helpers import (
    MAX_PIXELS,
    TOY_CLASSES,
    crafted_model,
    interpret,
    make_identifier,
    probabilities,
)


def test_predictions_of_model_keep_order_scores_and_failures(runner):
    model = crafted_model()
    identifier = make_identifier(runner)
    a = interpret(identifier, model, probabilities(0.1, 0.6, 0.2, 0.0, 0.1), top_k=3)
    b = interpret(identifier, model, probabilities(0.0, 0.0, 0.05, 0.9, 0.05), top_k=3)
    paths = [Path("a.jpg"), Path("broken.jpg"), Path("b.jpg")]
    found = FileAnswers(paths, [a, None, b], [(Path("broken.jpg"), "not an image")])

    predictions = predictions_of_model(model, found)
    assert predictions.source == "tflite crafted_v1"
    assert predictions.classes == TOY_CLASSES[:4]  # never the background class
    assert predictions.paths == paths and predictions.failures == found.failures
    first, missing, last = predictions.ranked
    assert missing is None and first is not None and last is not None
    assert first.names == ["Vanessa atalanta", "Danaus plexippus", "Vanessa cardui"]
    assert first.scores == [hit.score for hit in a.species] == pytest.approx([0.6, 0.2, 0.1])
    assert last.names[0] == "Pieris rapae" and len(last.names) == 3

    out = io.StringIO(newline="")
    write_predictions_csv(predictions, out)
    rows = out.getvalue().splitlines()
    assert rows[0] == "path,rank,scientific_name,score,error"
    assert rows[1].startswith("a.jpg,1,Vanessa atalanta,0.6") and "broken.jpg,,,,not an image" in rows
    assert len(rows) == 1 + 3 + 1 + 3


def small_index() -> SpeciesIndex:
    labels = [Label(scientific_name="Danaus plexippus"), Label(scientific_name="Vanessa cardui")]
    flat = faiss.IndexFlatIP(2)
    flat.add(np.eye(2, dtype=np.float32))
    manifest = IndexManifest(
        version="v-test",
        created_at=datetime.now(UTC),
        embedder=EmbedderIdentity(name="e", sha256=None, output_key=None, input=InputSpec(), output_dim=2),
        pca_dims=None,
        dim=2,
        index_type="flat",
        n_vectors=2,
        n_species=2,
    )
    return SpeciesIndex(manifest, flat, None, labels, np.array([0, 1], np.int32))


def test_predictions_of_index_name_the_index_and_its_species(runner):
    index = small_index()
    lookup = Lookup(None, runner, TaxonomyBook(), IndexSettings(), RankingSettings(), max_pixels=MAX_PIXELS)
    votes = [SpeciesVote(1, 0.7, 12, 0.93), SpeciesVote(0, 0.3, 8, 0.81)]
    answer = lookup.interpret(index, votes)
    assert [(h.rank, h.label.scientific_name, h.neighbours) for h in answer.species] == [
        (1, "Vanessa cardui", 12),
        (2, "Danaus plexippus", 8),
    ]
    assert answer.no_match_reason is None
    assert lookup.interpret(index, []).no_match_reason == "empty_index"

    found = FileLookups([Path("x.jpg"), Path("y.jpg")], [answer, None], [(Path("y.jpg"), "truncated")])
    predictions = predictions_of_index(index, found)
    assert predictions.source == "index v-test (e)"
    assert predictions.classes == ["Danaus plexippus", "Vanessa cardui"]
    ranked = predictions.ranked[0]
    assert ranked is not None and ranked.names == ["Vanessa cardui", "Danaus plexippus"]
    assert ranked.scores == [0.7, 0.3] and predictions.ranked[1] is None
    assert predictions.failures == [(Path("y.jpg"), "truncated")]
