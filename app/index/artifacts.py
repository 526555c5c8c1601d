"""An index on disk: immutable version folders and an atomically switched ``current`` link.

    INDEX_DIR/
      current -> v-20261121T203000Z-1a2b3c      (a symlink, replaced with rename(2))
      v-20261121T203000Z-1a2b3c/
        index.json     IndexManifest: the embedder's identity, sizes, index type
        index.faiss    FAISS's own binary format
        pca.npz        mean + components (absent when the vectors were too few to fit one)
        labels.json    [{"scientific_name", "common_name"}], position = label id
        rows.npy       int32 label id of each vector

A version is written under a temporary name, flushed, renamed into place and only then made
``current``: a crash leaves either the old index or the new one, never half of one. Writers
(``build-index``, ``add-to-index``, ``POST /v1/index/items``) serialise on an flock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import faiss
import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict

from app.core import InputSpec, Label, l2_normalize
from app.index.pca import PCA

FORMAT_VERSION = 1
# Exact search up to here (~10 ms per query at 100k x 128 on 2 cores); HNSW beyond.
HNSW_FROM = 100_000
KEEP_VERSIONS = 3

log = logging.getLogger(__name__)

Vectors = npt.NDArray[np.float32]


class EmbedderIdentity(BaseModel):
    """What makes two embedders produce comparable vectors: the weights, the tensor read and
    the preprocessing. The name is how the server finds it in its manifest."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    sha256: str | None  # of the model file or SavedModel folder; None for a TF-Hub handle
    handle: str | None = None
    output_key: str | None
    input: InputSpec
    output_dim: int

    def mismatches(self, other: EmbedderIdentity) -> list[str]:
        mine, theirs = self.model_dump(exclude={"name"}), other.model_dump(exclude={"name"})
        return [
            f"{key}: index {mine[key]!r}, server {theirs[key]!r}" for key in mine if mine[key] != theirs[key]
        ]


class IndexManifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    version: str
    parent: str | None = None  # the version this one extends
    created_at: datetime
    embedder: EmbedderIdentity
    pca_dims: int | None
    dim: int
    metric: Literal["cosine"] = "cosine"
    index_type: Literal["flat", "hnsw"]
    n_vectors: int
    n_species: int


def new_faiss_index(dim: int, expected_size: int) -> tuple[faiss.Index, Literal["flat", "hnsw"]]:
    if expected_size < HNSW_FROM:
        return faiss.IndexFlatIP(dim), "flat"
    index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    index.hnsw.efConstruction = 80
    return index, "hnsw"


@dataclass
class SpeciesIndex:
    manifest: IndexManifest
    faiss_index: faiss.Index
    pca: PCA | None
    labels: list[Label]
    rows: npt.NDArray[np.int32]

    def project(self, features: Vectors) -> Vectors:
        """Embedder features -> the unit vectors stored in the index (cosine = inner product)."""
        vectors = l2_normalize(np.asarray(features, dtype=np.float32).reshape(len(features), -1))
        if self.pca is not None:
            vectors = l2_normalize(self.pca.transform(vectors))
        return vectors

    def search(self, vectors: Vectors, k: int, ef_search: int = 128) -> tuple[Vectors, npt.NDArray[np.int64]]:
        k = min(k, self.faiss_index.ntotal)
        params = (
            faiss.SearchParametersHNSW(efSearch=max(ef_search, k))  # type: ignore[attr-defined]
            if self.manifest.index_type == "hnsw"
            else None
        )
        sims, ids = self.faiss_index.search(vectors, k, params=params)
        return sims, ids

    def extended(self, features: Vectors, labels: list[Label], version: str) -> SpeciesIndex:
        """A new index with more photos (new species included); PCA and index type are kept, so
        nothing is retrained. The current one stays untouched and keeps serving."""
        all_labels = list(self.labels)
        ids = []
        for label in labels:
            found = next(
                (i for i, known in enumerate(all_labels) if known.scientific_name == label.scientific_name),
                None,
            )
            if found is None:
                all_labels.append(label)
                found = len(all_labels) - 1
            ids.append(found)
        index = faiss.clone_index(self.faiss_index)
        index.add(self.project(features))
        rows = np.concatenate([self.rows, np.asarray(ids, dtype=np.int32)])
        manifest = self.manifest.model_copy(
            update={
                "version": version,
                "parent": self.manifest.version,
                "created_at": datetime.now(UTC),
                "n_vectors": int(index.ntotal),
                "n_species": len(all_labels),
            }
        )
        return SpeciesIndex(manifest, index, self.pca, all_labels, rows)


def new_version_name() -> str:
    return f"v-{datetime.now(UTC):%Y%m%dT%H%M%S}Z-{uuid.uuid4().hex[:6]}"


class IndexLoadError(Exception):
    """An index folder that cannot be read: missing, incomplete or from an unknown format."""


class IndexDir:
    def __init__(self, root: Path) -> None:
        self.root = root

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    def current_version(self) -> str | None:
        try:
            return str(self.current_link.readlink())
        except (FileNotFoundError, OSError):
            return None

    def version_stamp(self, version: str) -> int | None:
        """When the version's manifest was last written (ns); None when it is not there. A refused
        version is retried when this changes: a folder restored, or repaired, under the same name."""
        try:
            return (self.root / version / "index.json").stat().st_mtime_ns
        except OSError:
            return None

    @contextlib.contextmanager
    def writer_lock(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def load(self, version: str | None = None) -> SpeciesIndex:
        version = version or self.current_version()
        if version is None:
            raise IndexLoadError(f"no index in {self.root}: build one with `python -m app build-index`")
        folder = self.root / version
        if not folder.is_dir():
            raise IndexLoadError(
                f"`current` in {self.root} points at {version}, which does not exist (deleted, or "
                f"never published): point it at a version that does, or publish one with "
                f"`python -m app build-index`"
            )
        try:
            manifest = IndexManifest.model_validate_json((folder / "index.json").read_text())
            if manifest.format_version != FORMAT_VERSION:
                raise IndexLoadError(
                    f"index format {manifest.format_version} is not {FORMAT_VERSION}: rebuild it"
                )
            index = faiss.read_index(str(folder / "index.faiss"))
            pca = PCA.load(folder / "pca.npz") if (folder / "pca.npz").exists() else None
            labels = [Label.model_validate(item) for item in json.loads((folder / "labels.json").read_text())]
            rows = np.load(folder / "rows.npy", allow_pickle=False).astype(np.int32)
        except (OSError, ValueError, RuntimeError) as exc:
            raise IndexLoadError(f"index {folder} is unreadable: {exc}") from exc
        if not (index.ntotal == len(rows) == manifest.n_vectors) or index.d != manifest.dim:
            raise IndexLoadError(f"index {folder} is inconsistent: {index.ntotal} vectors, {len(rows)} rows")
        if len(rows) and int(rows.max()) >= len(labels):
            raise IndexLoadError(f"index {folder} has rows pointing past its {len(labels)} labels")
        return SpeciesIndex(manifest, index, pca, labels, rows)

    def publish(self, species_index: SpeciesIndex) -> str:
        """Writes a complete version folder, then switches ``current`` to it atomically.

        A failure before the switch (a full disk: ENOSPC, a read-only volume: EROFS) raises the
        OSError with its errno and leaves nothing behind: no staging folder, no new version, the
        old ``current``. After the switch the version is published: a failing fsync of the folder
        is logged, not raised (the readers already see the new version)."""
        version = species_index.manifest.version
        self.root.mkdir(parents=True, exist_ok=True)
        staging = self.root / f".tmp-{uuid.uuid4().hex}"
        staging.mkdir()
        final = self.root / version
        try:
            _write_faiss(species_index.faiss_index, staging / "index.faiss")
            if species_index.pca is not None:
                species_index.pca.save(staging / "pca.npz")
            _write_text(
                staging / "labels.json", json.dumps([label.model_dump() for label in species_index.labels])
            )
            with (staging / "rows.npy").open("wb") as fh:
                np.save(fh, species_index.rows, allow_pickle=False)
            _write_text(staging / "index.json", species_index.manifest.model_dump_json(indent=2))
            for path in staging.iterdir():
                _fsync(path)
            staging.rename(final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        link = self.root / f".current-{uuid.uuid4().hex}"
        try:
            link.symlink_to(version)
            link.replace(self.current_link)  # rename(2): readers see the old link or the new one
        except BaseException:
            link.unlink(missing_ok=True)
            shutil.rmtree(final, ignore_errors=True)  # never made current: not a version
            raise
        try:
            _fsync(self.root)
        except OSError as exc:
            log.warning("index %s published, but fsync of %s failed: %s", version, self.root, exc)
        self._prune(keep=version)
        return version

    def _prune(self, keep: str) -> None:
        versions = sorted(p for p in self.root.glob("v-*") if p.is_dir())
        for old in versions[:-KEEP_VERSIONS]:
            if old.name != keep:
                shutil.rmtree(old, ignore_errors=True)


def _write_faiss(index: faiss.Index, path: Path) -> None:
    """faiss.write_index through a Python file: a failed write raises the OSError itself (ENOSPC,
    EROFS, EIO with its errno), where faiss's own writer raises a RuntimeError with the text."""
    with path.open("wb") as fh:
        writer = faiss.PyCallbackIOWriter(fh.write)  # type: ignore[attr-defined]
        try:
            faiss.write_index(index, writer)
        finally:
            del writer


def _write_text(path: Path, text: str) -> None:
    path.write_text(text, encoding="utf-8")


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
