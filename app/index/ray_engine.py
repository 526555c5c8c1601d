"""``build-index --engine ray``: the embedding stage on Ray Data.

Photos are a dataset of paths; ``map_batches`` runs them through an actor pool in which each
actor loads the embedder once (from the same manifest, by name) and embeds whole batches. Ray
runs locally by default, or on a cluster given by address; PCA and FAISS stay on this machine
(500k x 128 float32 is 256 MB). On a cluster every node must see the photos, the manifest and the
model files at the same paths (a shared filesystem), and every actor's embedder must be the one
this machine loaded: its sha256 comes back with each batch and a mismatch stops the build.

Unlike the local engine there are no resumable chunks: Ray retries a failed task itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.core.ray_session import ray_session
from app.index.embedding import Embedded
from app.models.registry import LoadedModel


class EmbedBatches:
    """A Ray Data actor: the embedder, loaded once per actor."""

    def __init__(self, manifest: str, user_manifest: str, name: str, max_pixels: int) -> None:
        from app.models.registry import open_registry
        from app.settings import AdmissionSettings, ModelSettings

        settings = ModelSettings(manifest=Path(manifest), user_manifest_file=Path(user_manifest))
        self._registry = open_registry(settings, AdmissionSettings(inference_workers=1), only=name)
        self._model = self._registry.get_ready(name, task="embedder")
        self._max_pixels = max_pixels

    def __call__(self, batch: dict[str, npt.NDArray[Any]]) -> dict[str, npt.NDArray[Any]]:
        from app.models.inference import infer_files

        paths = [Path(str(p)) for p in batch["path"]]
        inferred = infer_files(
            self._model, paths, max_pixels=self._max_pixels, workers=1, batch_size=max(1, len(paths))
        )
        errors = {str(path): error for path, error in inferred.failures}
        return {
            "row": batch["row"],
            "features": inferred.outputs,
            "ok": inferred.ok,
            "error": np.array([errors.get(str(p), "") for p in paths], dtype=object),
            "sha256": np.array([self._model.sha256 or ""] * len(paths), dtype=object),
        }


def embed_with_ray(
    embedder: LoadedModel,
    manifests: tuple[Path, Path],  # the shipped and the user's, as the registry merges them
    paths: list[Path],
    *,
    max_pixels: int,
    address: str | None = None,
    actors: int = 2,
    batch_size: int = 32,
    progress: bool = True,
) -> Embedded:
    import ray

    dim = embedder.output_dim
    if dim is None:
        raise ValueError(f"embedder {embedder.spec.name} is not loaded")
    with ray_session(address, actors):
        ray.data.DataContext.get_current().enable_progress_bars = progress
        dataset = ray.data.from_items([{"row": i, "path": str(p.resolve())} for i, p in enumerate(paths)])
        embedded = dataset.map_batches(
            EmbedBatches,
            fn_constructor_kwargs={
                "manifest": str(manifests[0].resolve()),
                "user_manifest": str(manifests[1].resolve()),
                "name": embedder.spec.name,
                "max_pixels": max_pixels,
            },
            concurrency=actors,
            batch_size=batch_size,
            num_cpus=1,
            batch_format="numpy",
        )
        result = Embedded(np.zeros((len(paths), dim), np.float32), np.zeros(len(paths), bool))
        for batch in embedded.iter_batches(batch_format="numpy", batch_size=None):
            loaded = {str(s) for s in batch["sha256"]}
            if loaded != {embedder.sha256 or ""}:
                raise ValueError(
                    f"a Ray worker loaded another {embedder.spec.name} (sha256 {sorted(loaded)}) than this "
                    f"machine ({embedder.sha256}): every node needs the same model file"
                )
            rows = batch["row"].astype(np.int64)
            result.features[rows] = batch["features"]
            result.ok[rows] = batch["ok"]
            result.failures += [(paths[r], str(e)) for r, e in zip(rows, batch["error"], strict=True) if e]
    return result
