"""What the embedder sees: 2-D maps of the photos' features coloured by species, and how well
unsupervised k-means recovers the species (purity, NMI), as in the butterfly seed's analysis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import normalized_mutual_info_score

from app.core.numeric import l2_normalize
from app.training.plots import scatter_png


class MapReport(BaseModel):
    embedder: str
    dataset: str
    photos: int
    species: int
    projections: list[str]  # the panels drawn: PCA, t-SNE, UMAP when installed
    pca_variance_2d: float  # share of the variance the PCA panel shows
    kmeans_k: int
    purity: float  # share of photos whose cluster's majority species is their own
    nmi: float  # normalised mutual information, clusters vs species


def purity(clusters: npt.NDArray[np.int64], labels: list[str]) -> float:
    labels_array = np.asarray(labels)
    majority = 0
    for cluster in np.unique(clusters):
        _, counts = np.unique(labels_array[clusters == cluster], return_counts=True)
        majority += int(counts.max())
    return majority / len(labels)


def embedding_map(
    features: npt.NDArray[np.float32],
    labels: list[str],
    out: Path,
    *,
    embedder: str,
    dataset: str,
    seed: int = 0,
) -> MapReport:
    if len(features) < 5:
        raise ValueError("an embedding map needs at least 5 photos")
    x = l2_normalize(features)
    reduced = PCA(n_components=min(50, *x.shape), random_state=seed).fit_transform(x)
    pca2 = PCA(n_components=2, random_state=seed).fit(x)
    panels: list[tuple[str, npt.NDArray[np.float32]]] = [("PCA", pca2.transform(x))]
    perplexity = float(min(30.0, (len(x) - 1) / 3))
    panels.append(
        ("t-SNE", TSNE(perplexity=perplexity, init="pca", random_state=seed).fit_transform(reduced))
    )
    try:
        import umap  # optional: pip install umap-learn

        panels.append(("UMAP", umap.UMAP(random_state=seed).fit_transform(reduced)))
    except ImportError:
        pass
    k = len(set(labels))
    clusters = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(reduced)
    report = MapReport(
        embedder=embedder,
        dataset=dataset,
        photos=len(labels),
        species=k,
        projections=[name for name, _ in panels],
        pca_variance_2d=float(pca2.explained_variance_ratio_.sum()),
        kmeans_k=k,
        purity=purity(clusters, labels),
        nmi=float(normalized_mutual_info_score(labels, clusters)),
    )
    scatter_png(
        panels,
        labels,
        out,
        title=f"{embedder} on {dataset}: k-means purity {report.purity:.2f}, NMI {report.nmi:.2f}",
    )
    out.with_suffix(".json").write_text(report.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return report
