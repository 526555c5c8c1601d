"""Photos on disk -> embedder features, in resumable chunks.

Each chunk of photos is written to ``work_dir`` as soon as it is embedded, under a key made of
the embedder's identity and the chunk's paths, sizes and mtimes; a rerun after an interruption
loads the finished chunks instead of embedding them again.
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from app.errors import ServiceError
from app.index.artifacts import EmbedderIdentity
from app.models.registry import LoadedModel
from app.pipeline import run_model

log = logging.getLogger(__name__)


def identity_of(entry: LoadedModel) -> EmbedderIdentity:
    if entry.num_outputs is None:
        raise ValueError(f"embedder {entry.spec.name} is not loaded")
    return EmbedderIdentity(
        name=entry.spec.name,
        sha256=entry.sha256,
        handle=entry.spec.handle,
        output_key=entry.spec.output_key,
        input=entry.spec.input,
        output_dim=entry.num_outputs,
    )


@dataclass
class Embedded:
    features: npt.NDArray[np.float32]  # [N, D]; rows of failed photos are zero
    ok: npt.NDArray[np.bool_]  # [N]
    failures: list[tuple[Path, str]] = field(default_factory=list)
    resumed_chunks: int = 0
    computed_chunks: int = 0


def _chunk_key(identity: EmbedderIdentity, paths: list[Path]) -> str:
    digest = hashlib.sha256(identity.model_dump_json().encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"\0{path.resolve()}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:20]


def embed_paths(
    entry: LoadedModel,
    paths: list[Path],
    *,
    work_dir: Path,
    max_pixels: int,
    chunk_size: int = 256,
    workers: int = 2,
    progress: bool = True,
) -> Embedded:
    identity = identity_of(entry)
    work_dir.mkdir(parents=True, exist_ok=True)
    features = np.zeros((len(paths), identity.output_dim), dtype=np.float32)
    ok = np.zeros(len(paths), dtype=bool)
    result = Embedded(features, ok)

    def embed_one(path: Path) -> npt.NDArray[np.float32] | str:
        try:
            return run_model(entry, path.read_bytes(), max_pixels).scores
        except (ServiceError, OSError) as exc:
            return getattr(exc, "message", str(exc))

    bar = tqdm(total=len(paths), unit="photo", desc=f"embedding ({entry.spec.name})", disable=not progress)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(paths), chunk_size):
            chunk = paths[start : start + chunk_size]
            cached = work_dir / f"{start // chunk_size:06d}-{_chunk_key(identity, chunk)}.npz"
            if cached.exists():
                with np.load(cached, allow_pickle=False) as data:
                    vectors, good = data["features"], data["ok"]
                result.resumed_chunks += 1
            else:
                vectors = np.zeros((len(chunk), identity.output_dim), dtype=np.float32)
                good = np.zeros(len(chunk), dtype=bool)
                for i, out in enumerate(pool.map(embed_one, chunk)):
                    if isinstance(out, str):
                        result.failures.append((chunk[i], out))
                        log.warning("skipped %s: %s", chunk[i], out)
                    else:
                        vectors[i], good[i] = out, True
                partial = cached.with_suffix(".partial")
                with partial.open("wb") as fh:
                    np.savez(fh, features=vectors, ok=good)
                partial.replace(cached)  # a chunk file is complete or absent
                result.computed_chunks += 1
            features[start : start + len(chunk)] = vectors
            ok[start : start + len(chunk)] = good
            bar.update(len(chunk))
    bar.close()
    return result


def chunk_files(work_dir: Path) -> list[Path]:
    return sorted(work_dir.glob("*.npz"))


def describe_failures(failures: list[tuple[Path, str]]) -> str:
    return json.dumps([{"path": str(p), "error": e} for p, e in failures], indent=2)
