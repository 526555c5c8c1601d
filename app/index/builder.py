"""build-index and add-to-index: labelled photo folders -> a published index version."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from app.core import Label, l2_normalize
from app.index.artifacts import (
    IndexDir,
    IndexManifest,
    SpeciesIndex,
    new_faiss_index,
    new_version_name,
)
from app.index.embedding import Embedded, embed_paths
from app.index.pca import fit_pca
from app.index.publishing import add_photos, identity_of
from app.index.species_folders import LabelledImage, labelled_images
from app.models.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BuildReport:
    manifest: IndexManifest
    photos: int
    skipped: int
    resumed_chunks: int
    explained_variance: float | None


def _labels_and_rows(names: list[tuple[str, str | None]]) -> tuple[list[Label], np.ndarray]:
    labels: list[Label] = []
    ids: dict[str, int] = {}
    rows = []
    for scientific, common in names:
        if scientific not in ids:
            ids[scientific] = len(labels)
            labels.append(Label(scientific_name=scientific, common_name=common))
        rows.append(ids[scientific])
    return labels, np.asarray(rows, dtype=np.int32)


# Another way to embed a list of photos (build-index --engine ray); the default is embed_paths.
EmbedFn = Callable[[list[Path]], Embedded]


def _embed_folder(
    images_dir: Path,
    embedder: LoadedModel,
    work: Path,
    *,
    max_pixels: int,
    chunk_size: int = 256,
    workers: int,
    progress: bool,
    embed: EmbedFn | None = None,
) -> tuple[list[LabelledImage], Embedded]:
    """The labelled photos under ``images_dir`` that could be embedded, and the embeddings."""
    images = labelled_images(images_dir)
    paths = [image.path for image in images]
    embedded = (
        embed(paths)
        if embed is not None
        else embed_paths(
            embedder,
            paths,
            work_dir=work,
            max_pixels=max_pixels,
            chunk_size=chunk_size,
            workers=workers,
            progress=progress,
        )
    )
    kept = [image for image, ok in zip(images, embedded.ok, strict=True) if ok]
    if not kept:
        raise ValueError(f"none of the {len(images)} photos under {images_dir} could be embedded")
    return kept, embedded


def build_index(
    images_dir: Path,
    out: Path,
    embedder: LoadedModel,
    *,
    dims: int = 128,
    max_pixels: int,
    chunk_size: int = 256,
    workers: int = 2,
    work_dir: Path | None = None,
    progress: bool = True,
    embed: EmbedFn | None = None,
) -> BuildReport:
    index_dir = IndexDir(out)
    work = work_dir or out / ".work"
    kept, embedded = _embed_folder(
        images_dir,
        embedder,
        work,
        max_pixels=max_pixels,
        chunk_size=chunk_size,
        workers=workers,
        progress=progress,
        embed=embed,
    )
    labels, rows = _labels_and_rows([(i.scientific_name, i.common_name) for i in kept])
    vectors = l2_normalize(embedded.features[embedded.ok])

    # PCA only when there are more photos than kept dimensions; otherwise it cannot be fitted.
    pca = fit_pca([vectors], dims) if dims < vectors.shape[1] and len(vectors) > dims else None
    projected = l2_normalize(pca.transform(vectors)) if pca is not None else vectors
    faiss_index, index_type = new_faiss_index(projected.shape[1], len(projected))
    faiss_index.add(projected)

    manifest = IndexManifest(
        version=new_version_name(),
        created_at=datetime.now(UTC),
        embedder=identity_of(embedder),
        pca_dims=pca.output_dim if pca is not None else None,
        dim=projected.shape[1],
        index_type=index_type,
        n_vectors=len(projected),
        n_species=len(labels),
    )
    with index_dir.writer_lock():
        index_dir.publish(SpeciesIndex(manifest, faiss_index, pca, labels, rows))
    if work_dir is None:
        shutil.rmtree(work, ignore_errors=True)
    return BuildReport(
        manifest,
        photos=len(kept),
        skipped=len(embedded.failures),
        resumed_chunks=embedded.resumed_chunks,
        explained_variance=float(pca.explained_variance_ratio.sum()) if pca is not None else None,
    )


def add_folder(
    images_dir: Path,
    index_dir: IndexDir,
    embedder: LoadedModel,
    *,
    max_pixels: int,
    workers: int = 2,
    progress: bool = True,
) -> tuple[SpeciesIndex, Embedded]:
    work = index_dir.root / ".work-add"
    kept, embedded = _embed_folder(
        images_dir, embedder, work, max_pixels=max_pixels, workers=workers, progress=progress
    )
    labels = [Label(scientific_name=i.scientific_name, common_name=i.common_name) for i in kept]
    with index_dir.writer_lock():
        _, extended = add_photos(index_dir, embedder, embedded.features[embedded.ok], labels)
    shutil.rmtree(work, ignore_errors=True)
    return extended, embedded
