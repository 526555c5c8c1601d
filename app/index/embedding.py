"""Photos on disk -> embedder features, in resumable chunks.

Each chunk of photos is written to ``work_dir`` as soon as it is embedded, under a key made of
the embedder's identity and the chunk's paths, sizes and mtimes; a rerun after an interruption
loads the finished chunks instead of embedding them again.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from app.imaging.augment import AUGMENTATIONS
from app.index.artifacts import EmbedderIdentity
from app.index.publishing import identity_of
from app.models.inference import infer_files
from app.models.registry import LoadedModel

log = logging.getLogger(__name__)


@dataclass
class Embedded:
    features: npt.NDArray[np.float32]  # [N, D]; rows of failed photos are zero
    ok: npt.NDArray[np.bool_]  # [N]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    resumed_chunks: int = 0


def _chunk_key(identity: EmbedderIdentity, paths: list[Path], augment: str | None) -> str:
    digest = hashlib.sha256(identity.model_dump_json().encode())
    if augment is not None:  # an augmented copy is another chunk
        digest.update(f"\0augment={augment}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def embed_paths(
    embedder: LoadedModel,
    paths: list[Path],
    *,
    work_dir: Path,
    max_pixels: int,
    chunk_size: int = 256,
    workers: int = 2,
    progress: bool = True,
    augment: str | None = None,
) -> Embedded:
    """``augment``: a name from ``AUGMENTATIONS``, applied to every photo before embedding."""
    identity = identity_of(embedder)
    work_dir.mkdir(parents=True, exist_ok=True)
    features = np.zeros((len(paths), identity.output_dim), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    result = Embedded(features, ok)

    bar = tqdm(total=len(paths), unit="photo", desc=f"embedding ({embedder.spec.name})", disable=not progress)
    for start in range(0, len(paths), chunk_size):
        chunk = paths[start : start + chunk_size]
        cached = work_dir / f"{start // chunk_size:06d}-{_chunk_key(identity, chunk, augment)}.npz"
        if cached.exists():
            with np.load(cached, allow_pickle=False) as data:
                vectors, good = data["features"], data["ok"]
            result.resumed_chunks += 1
            bar.update(len(chunk))
        else:
            inferred = infer_files(
                embedder,
                chunk,
                max_pixels=max_pixels,
                workers=workers,
                transform=AUGMENTATIONS[augment] if augment else None,
                on_progress=bar.update,
            )
            vectors, good = inferred.outputs, inferred.ok
            for path, error in inferred.failures:
                result.failures.append((path, error))
                log.warning("skipped %s: %s", path, error)
            partial = cached.with_suffix(".partial")
            with partial.open("wb") as fh:
                np.savez(fh, features=vectors, ok=good)
            partial.replace(cached)  # a chunk file is complete or absent
        features[start : start + len(chunk)] = vectors
        ok[start : start + len(chunk)] = good
    bar.close()
    return result
