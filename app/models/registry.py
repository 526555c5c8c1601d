"""Loads every manifest entry once and hands out the ready ones by name or route group.

A model that is missing on disk or fails to load disables only itself: its state and reason
are kept for /v1/models and /health/ready, and its endpoint answers 503 with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.enrich.taxonomy import Taxon, load_taxonomy
from app.errors import ModelNotFound, ModelUnavailable
from app.models.backends.base import Backend, BackendError
from app.models.batcher import MicroBatcher
from app.models.checksum import tree_sha256
from app.models.labels import Label, load_labels
from app.models.manifest import Manifest, ModelSpec
from app.settings import Settings

log = logging.getLogger(__name__)

ModelState = Literal["pending", "loading", "ready", "missing", "failed"]


@dataclass
class LoadedModel:
    spec: ModelSpec
    state: ModelState = "pending"
    reason: str | None = None
    location: str | None = None
    backend: Backend | None = None
    labels: list[Label] = field(default_factory=list)
    load_seconds: float | None = None
    sha256: str | None = None  # of what was loaded; an index records its embedder's
    taxonomy: dict[str, Taxon] = field(default_factory=dict)  # scientific name -> GBIF taxon
    batcher: MicroBatcher | None = None  # SavedModels: concurrent requests share one call

    @property
    def num_outputs(self) -> int | None:
        return self.backend.output_dim if self.backend is not None else None

    def scores(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        """Class probabilities (or features) for a preprocessed batch; runs in a worker thread."""
        if self.backend is None:
            raise ModelUnavailable(f"model {self.spec.name} is {self.state}: {self.reason}")
        out = self.backend.predict(batch)
        if self.spec.output == "logits":
            shifted = out - out.max(axis=1, keepdims=True)
            exp = np.exp(shifted)
            out = exp / exp.sum(axis=1, keepdims=True)
        return out


class Registry:
    def __init__(
        self,
        manifest: Manifest,
        *,
        workers: int = 1,
        tflite_threads: int = 1,
        batch_max_size: int = 1,
        batch_max_wait_ms: float = 0.0,
        max_queue: int = 64,
    ) -> None:
        self.manifest = manifest
        self._workers = workers
        self._tflite_threads = tflite_threads
        self._batching = (batch_max_size, batch_max_wait_ms, max_queue)
        self.on_batch: Callable[[str, int, float], None] | None = None
        self._models = {spec.name: LoadedModel(spec) for spec in manifest.models}
        self._done = threading.Event()

    @classmethod
    def from_settings(cls, manifest: Manifest, settings: Settings) -> Registry:
        return cls(
            manifest,
            workers=settings.inference_workers,
            tflite_threads=settings.tflite_threads,
            batch_max_size=settings.batch_max_size,
            batch_max_wait_ms=settings.batch_max_wait_ms,
            max_queue=settings.max_queue,
        )

    # --- loading --------------------------------------------------------------------------
    def load_all(self) -> None:
        """Blocking; call from a worker thread. Never raises for a single model's problem."""
        try:
            for entry in self._models.values():
                self._load(entry)
        finally:
            self._done.set()

    def _load(self, entry: LoadedModel) -> None:
        spec = entry.spec
        entry.state = "loading"
        started = time.perf_counter()
        try:
            if spec.file is not None:
                path = self.manifest.resolve(spec.file)
                entry.location = str(path)
                if not path.exists():
                    entry.state, entry.reason = (
                        "missing",
                        (f"{path} not found: install the model with ./download_volume.sh"),
                    )
                    log.warning("model %s missing: %s", spec.name, entry.reason)
                    return
                if spec.sha256 is not None or spec.task == "embedder":
                    entry.sha256 = tree_sha256(path)
                if spec.sha256 is not None and entry.sha256 != spec.sha256:
                    raise BackendError(f"sha256 mismatch: manifest {spec.sha256}, file {entry.sha256}")
            else:
                assert spec.handle is not None
                entry.location = spec.handle
            entry.labels = self._labels(spec)
            entry.taxonomy = self._taxonomy(spec)
            entry.backend = self._open_backend(spec, entry.location)
            self._check_outputs(entry)
        except (BackendError, OSError, ValueError) as exc:
            entry.state, entry.reason = "failed", str(exc)
            if entry.backend is not None:
                entry.backend.close()
                entry.backend = None
            log.error("model %s failed to load: %s", spec.name, exc)
            return
        max_batch, max_wait_ms, max_queue = self._batching
        # TFLite: one interpreter per worker and batching does not pay on CPU; SavedModels gain.
        if spec.format == "saved_model" and max_batch > 1:
            entry.batcher = MicroBatcher(
                spec.name,
                entry.scores,
                max_batch=max_batch,
                max_wait_ms=max_wait_ms,
                max_queue=max_queue,
                on_batch=self.on_batch,
            )
        entry.load_seconds = time.perf_counter() - started
        entry.state, entry.reason = "ready", None
        log.info("model %s ready in %.2fs", spec.name, entry.load_seconds)

    def _labels(self, spec: ModelSpec) -> list[Label]:
        if spec.labels is None:
            return []
        common = self.manifest.resolve(spec.common_names) if spec.common_names else None
        if common is not None and not common.exists():
            log.warning("model %s: common-name file %s missing; scientific names only", spec.name, common)
            common = None
        return load_labels(self.manifest.resolve(spec.labels), common)

    def _taxonomy(self, spec: ModelSpec) -> dict[str, Taxon]:
        if spec.taxonomy is None:
            return {}
        path = self.manifest.resolve(spec.taxonomy)
        if not path.exists():
            log.warning("model %s: taxonomy %s missing; run `python -m app link-gbif`", spec.name, path)
            return {}
        return load_taxonomy(path)

    def _open_backend(self, spec: ModelSpec, location: str) -> Backend:
        if spec.format == "tflite":
            from app.models.backends.tflite import TFLiteBackend

            return TFLiteBackend(
                self.manifest.resolve(location),
                spec,
                workers=self._workers,
                threads=self._tflite_threads,
            )
        from app.models.backends.savedmodel import SavedModelBackend

        return SavedModelBackend(location, spec)

    @staticmethod
    def _check_outputs(entry: LoadedModel) -> None:
        spec, dim = entry.spec, entry.num_outputs
        if spec.task != "classifier":
            return
        if dim != len(entry.labels):
            raise BackendError(f"model has {dim} outputs but {spec.labels} has {len(entry.labels)} labels")
        if spec.background_index is not None and spec.background_index >= len(entry.labels):
            raise BackendError(f"background_index {spec.background_index} out of range")

    # --- lookup ---------------------------------------------------------------------------
    @property
    def loading_done(self) -> bool:
        return self._done.is_set()

    def entries(self) -> list[LoadedModel]:
        return list(self._models.values())

    def is_ready(self, *, require_all: bool) -> bool:
        if not self.loading_done:
            return False
        states = [entry.state for entry in self._models.values()]
        if require_all:
            return all(state == "ready" for state in states)
        return "ready" in states

    def get(self, name: str, *, task: str | None = None) -> LoadedModel:
        entry = self._models.get(name)
        if entry is None or (task is not None and entry.spec.task != task):
            raise ModelNotFound(
                f"no {task or 'model'} named {name!r}",
                detail={
                    "available": sorted(n for n, e in self._models.items() if task in (None, e.spec.task))
                },
            )
        return self._ready(entry)

    def by_group(self, group: str) -> LoadedModel:
        for entry in self._models.values():
            if entry.spec.group == group:
                return self._ready(entry)
        raise ModelUnavailable(
            f"no model is configured for group {group!r}: add one with group = {group!r} to the manifest",
            detail={"group": group},
        )

    @staticmethod
    def _ready(entry: LoadedModel) -> LoadedModel:
        if entry.state == "ready":
            return entry
        reason = entry.reason or "still loading"
        raise ModelUnavailable(
            f"model {entry.spec.name} is {entry.state}: {reason}",
            detail={"model": entry.spec.name, "state": entry.state},
            headers={"Retry-After": "5"} if entry.state in ("pending", "loading") else None,
        )

    def close(self) -> None:
        for entry in self._models.values():
            if entry.batcher is not None:
                entry.batcher.close()
                entry.batcher = None
            if entry.backend is not None:
                entry.backend.close()
                entry.backend = None
