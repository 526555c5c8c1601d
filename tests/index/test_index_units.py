"""The lookup's parts on their own: folder names, PCA, the vote, atomic publishing."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.core import InputSpec, Label, l2_normalize
from app.index.artifacts import (
    EmbedderIdentity,
    IndexDir,
    IndexLoadError,
    IndexManifest,
    SpeciesIndex,
    new_version_name,
)
from app.index.pca import PCA, fit_pca
from app.index.species_folders import labelled_images, species_from_folder
from app.index.vote import vote


@pytest.mark.parametrize(
    ("folder", "species"),
    [
        ("Danaus_plexippus", "Danaus plexippus"),
        ("danaus_plexippus", "Danaus plexippus"),
        ("Heraclides cresphontes", "Heraclides cresphontes"),
        (
            "00001_Animalia_Arthropoda_Chilopoda_Geophilomorpha_Geophilidae_Geophilus_vittatus",
            "Geophilus vittatus",
        ),
        (
            "09999_Plantae_Tracheophyta_Magnoliopsida_Asterales_Asteraceae_Helianthus_annuus",
            "Helianthus annuus",
        ),
        ("Larus_argentatus_smithsonianus", "Larus argentatus smithsonianus"),
    ],
)
def test_species_names_from_plain_and_inat_2021_folders(folder, species):
    assert species_from_folder(folder) == species


def test_labelled_images_reads_folders_and_a_labels_csv(tmp_path):
    for folder in ("Vanessa_atalanta", "odd-folder"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "a.jpg").write_bytes(b"x")
        (tmp_path / folder / "notes.txt").write_text("not a photo")
    (tmp_path / "labels.csv").write_text(
        "folder,scientific_name,common_name\nodd-folder,Vanessa cardui,Painted Lady\n"
    )
    found = labelled_images(tmp_path)
    assert [(p.path.parent.name, p.scientific_name, p.common_name) for p in found] == [
        ("Vanessa_atalanta", "Vanessa atalanta", None),
        ("odd-folder", "Vanessa cardui", "Painted Lady"),
    ]


def test_pca_matches_an_svd_and_round_trips_through_npz(tmp_path):
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(400, 32)) @ rng.normal(size=(32, 32))).astype(np.float32)
    pca = fit_pca([x[:150], x[150:]], dims=8)  # streamed in two chunks
    _, s, vt = np.linalg.svd(x - x.mean(axis=0), full_matrices=False)
    for mine, reference in zip(pca.components, vt[:8], strict=True):
        assert abs(float(mine @ reference)) == pytest.approx(1.0, abs=1e-4)  # same axis, any sign
    assert pca.explained_variance_ratio == pytest.approx((s[:8] ** 2) / (s**2).sum(), rel=1e-3)
    pca.save(tmp_path / "pca.npz")
    again = PCA.load(tmp_path / "pca.npz")
    np.testing.assert_array_equal(again.transform(x), pca.transform(x))
    with pytest.raises(ValueError, match="cannot keep 64"):
        fit_pca([x[:40]], dims=64)


def test_vote_scores_are_finite_bounded_and_sum_to_one_even_at_distance_zero():
    sims = np.array([1.0, 1.0, 0.9, 0.5, -0.2], dtype=np.float32)  # two exact duplicates
    rows = np.array([3, 0, 1, 2, -1], dtype=np.int64)  # -1: FAISS padding
    row_labels = np.array([7, 7, 8, 9], dtype=np.int32)
    votes = vote(sims, rows, row_labels, top_k=10, temperature=0.05)
    assert [v.label for v in votes] == [7, 9, 8]  # 7: rows 0 and 1 (1.0, 0.9); 9: row 3 (1.0)
    assert votes[0].neighbours == 2 and votes[0].similarity == pytest.approx(1.0)
    scores = [v.score for v in votes]
    assert all(np.isfinite(scores)) and all(0 <= s <= 1 for s in scores)
    assert sum(scores) == pytest.approx(1.0)
    assert sum(v.score for v in vote(sims, rows, row_labels, top_k=1, temperature=0.05)) <= 1.0
    assert vote(sims[:0], rows[:0], row_labels, top_k=5, temperature=0.05) == []


def _tiny_index(n: int = 20, dim: int = 8) -> SpeciesIndex:
    vectors = l2_normalize(np.random.default_rng(1).normal(size=(n, dim)).astype(np.float32))
    index = faiss.IndexFlatIP(dim)
    index.add(vectors)
    identity = EmbedderIdentity(name="e", sha256="0" * 64, output_key=None, input=InputSpec(), output_dim=dim)
    manifest = IndexManifest(
        version=new_version_name(),
        created_at=datetime.now(UTC),
        embedder=identity,
        pca_dims=None,
        dim=dim,
        index_type="flat",
        n_vectors=n,
        n_species=2,
    )
    labels = [Label(scientific_name="Aus bus"), Label(scientific_name="Cus dus")]
    return SpeciesIndex(manifest, index, None, labels, np.arange(n, dtype=np.int32) % 2)


def test_publish_switches_current_only_when_a_version_is_complete(tmp_path, monkeypatch):
    store = IndexDir(tmp_path / "index")
    first = _tiny_index()
    store.publish(first)
    assert store.current_version() == first.manifest.version

    def crash(*_args, **_kwargs):
        raise OSError("disk full")

    second = first.extended(
        np.ones((1, 8), np.float32), [Label(scientific_name="Eus fus")], new_version_name()
    )
    monkeypatch.setattr(np, "save", crash)  # dies after index.faiss is written, before rows.npy
    with pytest.raises(OSError, match="disk full"):
        store.publish(second)
    monkeypatch.undo()
    assert store.current_version() == first.manifest.version
    # no half-written version left behind
    assert sorted(p.name for p in store.root.iterdir()) == ["current", first.manifest.version]
    assert store.load().manifest.n_vectors == 20

    store.publish(second)
    loaded = store.load()
    assert loaded.manifest.parent == first.manifest.version
    assert loaded.manifest.n_vectors == 21 and loaded.labels[-1].scientific_name == "Eus fus"


def test_an_inconsistent_index_is_refused(tmp_path):
    store = IndexDir(tmp_path)
    version = store.publish(_tiny_index())
    np.save(Path(tmp_path / version / "rows.npy"), np.zeros(5, dtype=np.int32))
    with pytest.raises(IndexLoadError, match="inconsistent"):
        store.load()
    with pytest.raises(IndexLoadError, match="no index"):
        IndexDir(tmp_path / "empty").load()
