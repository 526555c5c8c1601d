"""Loading one manifest entry: checks, labels, backend, batcher. Blocking: worker threads only.

A model that is missing on disk or fails to load disables only itself; its state and reason
stay on the entry for /v1/models and /health/ready.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from app.models.backends.base import Backend, BackendError, FeatureBackend
from app.models.batcher import MicroBatcher
from app.models.checksum import tree_sha256
from app.models.labels import Label, load_labels
from app.models.loaded import LoadedModel, TaxonomyFiles
from app.models.manifest import Manifest, ModelSpec
from app.models.scope import ModelScope, load_calibration

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LoadOptions:
    workers: int = 1  # TFLite: one interpreter per worker thread
    tflite_threads: int = 1
    batch_max_size: int = 1  # SavedModels: 1 = no micro-batching
    batch_max_wait_ms: float = 0.0
    max_queue: int = 64
    on_batch: Callable[[str, int, float], None] | None = None


def file_mtime(manifest: Manifest, spec: ModelSpec) -> int | None:
    if spec.file is None:
        return None
    try:
        return manifest.resolve(spec.file, spec).stat().st_mtime_ns
    except OSError:
        return None


def load_entry(
    model: LoadedModel, manifest: Manifest, embedders: dict[str, LoadedModel], options: LoadOptions
) -> None:
    """Loads ``model`` in place; never raises for the model's own problem. ``embedders``: the
    entries a head may run on (loaded before it)."""
    spec = model.spec
    model.state = "loading"
    started = time.perf_counter()
    try:
        if not _locate(model, manifest):
            return
        model.labels = _labels(spec, manifest)
        model.taxonomy_path = TaxonomyFiles.of(
            manifest.resolve(spec.taxonomy, spec) if spec.taxonomy else None,
            manifest.resolve(spec.offline_taxonomy, spec) if spec.offline_taxonomy else None,
        )
        if spec.embedder is not None:
            model.backend = _open_head(model, embedders.get(spec.embedder))
        else:
            assert model.location is not None
            model.backend = _open_backend(spec, Path(model.location), model.location, options)
        _check_outputs(model)
        if spec.task == "classifier":
            model.scope = _scope(model, manifest)
    except (BackendError, OSError, ValueError) as exc:
        model.state, model.reason = "failed", str(exc)
        if model.backend is not None:
            model.backend.close()
            model.backend = None
        log.error("model %s failed to load: %s", spec.name, exc)
        return
    # TFLite: one interpreter per worker and batching does not pay on CPU; SavedModels gain,
    # and so does a head over a SavedModel embedder.
    runs_on = embedders.get(spec.embedder) if spec.embedder else model
    if runs_on is not None and runs_on.spec.format == "saved_model" and options.batch_max_size > 1:
        model.batcher = MicroBatcher(
            spec.name,
            model.predict,
            max_batch=options.batch_max_size,
            max_wait_ms=options.batch_max_wait_ms,
            max_queue=options.max_queue,
            on_batch=options.on_batch,
        )
    model.load_seconds = time.perf_counter() - started
    model.state, model.reason = "ready", None
    log.info("model %s ready in %.2fs", spec.name, model.load_seconds)


def _locate(model: LoadedModel, manifest: Manifest) -> bool:
    """Where the weights are, checked against the manifest's sha256; False when missing."""
    spec = model.spec
    if spec.file is None:
        assert spec.handle is not None
        model.location = spec.handle
        return True
    path = manifest.resolve(spec.file, spec)
    model.location = str(path)
    model.file_mtime_ns = file_mtime(manifest, spec)
    if not path.exists():
        model.state, model.reason = (
            "missing",
            f"{path} not found: install the model with ./download_volume.sh",
        )
        log.warning("model %s missing: %s", spec.name, model.reason)
        return False
    if spec.sha256 is not None or spec.task == "embedder":
        model.sha256 = tree_sha256(path)
    if spec.sha256 is not None and model.sha256 != spec.sha256:
        raise BackendError(f"sha256 mismatch: manifest {spec.sha256}, file {model.sha256}")
    return True


def _labels(spec: ModelSpec, manifest: Manifest) -> list[Label]:
    if spec.labels is None:
        return []
    common = manifest.resolve(spec.common_names, spec) if spec.common_names else None
    if common is not None and not common.exists():
        log.warning("model %s: common-name file %s missing; scientific names only", spec.name, common)
        common = None
    return load_labels(manifest.resolve(spec.labels, spec), common)


def _open_backend(spec: ModelSpec, path: Path, location: str, options: LoadOptions) -> Backend:
    if spec.format == "tflite":
        from app.models.backends.tflite import TFLiteBackend

        return TFLiteBackend(path, spec, workers=options.workers, threads=options.tflite_threads)
    from app.models.backends.savedmodel import SavedModelBackend

    return SavedModelBackend(location, spec)


def _open_head(model: LoadedModel, embedder: LoadedModel | None) -> Backend:
    from app.models.backends.head import HeadBackend

    spec = model.spec
    if embedder is None or embedder.state != "ready" or embedder.output_dim is None:
        state = embedder.state if embedder is not None else "absent"
        raise BackendError(f"its embedder {spec.embedder} is {state}")
    model.input = embedder.input_spec
    assert model.location is not None
    return HeadBackend(
        Path(model.location),
        embedder_name=embedder.spec.name,
        embedder_sha256=embedder.sha256,
        embedder_dim=embedder.output_dim,
        features=embedder.predict,
    )


def _scope(model: LoadedModel, manifest: Manifest) -> ModelScope:
    spec = model.spec
    calibration = (
        load_calibration(manifest.resolve(spec.calibration, spec), model.sha256) if spec.calibration else None
    )
    weights = model.backend.class_weights if isinstance(model.backend, FeatureBackend) else None
    if weights is not None and weights.rows.shape[0] != len(model.labels):
        raise BackendError(f"class weights have {weights.rows.shape[0]} rows for {len(model.labels)} labels")
    return ModelScope(calibration, weights, background_index=spec.background_index)


def _check_outputs(model: LoadedModel) -> None:
    spec, dim = model.spec, model.output_dim
    if spec.task != "classifier":
        return
    if dim != len(model.labels):
        raise BackendError(f"model has {dim} outputs but {spec.labels} has {len(model.labels)} labels")
    if spec.background_index is not None and spec.background_index >= len(model.labels):
        raise BackendError(f"background_index {spec.background_index} out of range")
