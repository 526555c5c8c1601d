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
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.enrich.taxonomy import Taxon, load_taxonomy
from app.errors import ModelNotFound, ModelUnavailable
from app.models.backends.base import Backend, BackendError
from app.models.batcher import MicroBatcher
from app.models.checksum import tree_sha256
from app.models.labels import Label, load_labels
from app.models.manifest import InputSpec, Manifest, ModelSpec
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
    input: InputSpec | None = None  # what to decode to: the spec's, or a head's embedder's
    file_mtime_ns: int | None = None  # a reload reloads an entry whose file changed

    @property
    def input_spec(self) -> InputSpec:
        return self.input or self.spec.input

    @property
    def num_outputs(self) -> int | None:
        return self.backend.output_dim if self.backend is not None else None

    def scores(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        """Class probabilities (or features) for a preprocessed batch; runs in a worker thread."""
        if self.backend is None:
            raise ModelUnavailable(f"model {self.spec.name} is {self.state}: {self.reason}")
        out = self.backend.predict(batch)
        return softmax(out) if self.spec.output == "logits" else out


def softmax(logits: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    out: npt.NDArray[np.float32] = exp / exp.sum(axis=1, keepdims=True)
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
        self._reloading = threading.Lock()

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
            for entry in self._in_load_order(list(self._models.values())):
                self._load(entry)
        finally:
            self._done.set()

    @staticmethod
    def _in_load_order(entries: list[LoadedModel]) -> list[LoadedModel]:
        # A head runs on its embedder, so embedders (and everything else) load first.
        return sorted(entries, key=lambda entry: entry.spec.format == "head")

    def reload(self, manifest: Manifest) -> list[str]:
        """Re-read the manifest (blocking; call from a worker thread): entries that are new, or
        whose manifest entry or file changed, are loaded aside and swapped in at once; the rest
        keep serving untouched. Returns the names loaded."""
        with self._reloading:
            return self._reload(manifest)

    def _reload(self, manifest: Manifest) -> list[str]:
        current = self._models
        fresh: dict[str, LoadedModel] = {}
        changed: set[str] = set()
        for spec in manifest.models:
            old = current.get(spec.name)
            if old is not None and old.spec == spec and old.file_mtime_ns == self._mtime(manifest, spec):
                fresh[spec.name] = old
            else:
                fresh[spec.name] = LoadedModel(spec)
                changed.add(spec.name)
        for spec in manifest.models:  # a head whose embedder is reloaded is reloaded with it
            if spec.embedder in changed and spec.name not in changed:
                fresh[spec.name] = LoadedModel(spec)
                changed.add(spec.name)
        self.manifest = manifest
        for entry in self._in_load_order([fresh[name] for name in changed]):
            self._load(entry, among=fresh)
        self._models = fresh
        for name, old in current.items():
            if fresh.get(name) is not old and old.batcher is not None:
                old.batcher.close()  # drains what is queued; the backend goes with its last user
        return sorted(changed)

    @staticmethod
    def _mtime(manifest: Manifest, spec: ModelSpec) -> int | None:
        if spec.file is None:
            return None
        try:
            return manifest.resolve(spec.file).stat().st_mtime_ns
        except OSError:
            return None

    def _load(self, entry: LoadedModel, among: dict[str, LoadedModel] | None = None) -> None:
        spec = entry.spec
        entry.state = "loading"
        started = time.perf_counter()
        try:
            if spec.file is not None:
                path = self.manifest.resolve(spec.file)
                entry.location = str(path)
                entry.file_mtime_ns = self._mtime(self.manifest, spec)
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
            if spec.embedder is not None:
                entry.backend = self._open_head(entry, (among or self._models).get(spec.embedder))
            else:
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
        # TFLite: one interpreter per worker and batching does not pay on CPU; SavedModels gain,
        # and so does a head over a SavedModel embedder.
        runs_on = (among or self._models).get(spec.embedder) if spec.embedder else entry
        if runs_on is not None and runs_on.spec.format == "saved_model" and max_batch > 1:
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

    def _open_head(self, entry: LoadedModel, embedder: LoadedModel | None) -> Backend:
        from app.models.backends.head import HeadBackend

        spec = entry.spec
        if embedder is None or embedder.state != "ready" or embedder.num_outputs is None:
            state = embedder.state if embedder is not None else "absent"
            raise BackendError(f"its embedder {spec.embedder} is {state}")
        entry.input = embedder.input_spec
        assert entry.location is not None
        return HeadBackend(
            Path(entry.location),
            embedder_name=embedder.spec.name,
            embedder_sha256=embedder.sha256,
            embedder_dim=embedder.num_outputs,
            features=embedder.scores,
        )

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

    def entry(self, name: str) -> LoadedModel | None:
        """The entry serving ``name`` now, in whatever state: a reload may have replaced it."""
        return self._models.get(name)

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


def open_registry(settings: Settings, only: str | None = None) -> Registry:
    """The loading the server's lifespan does, in the foreground, for the CLI and batch jobs
    (``only``: just that model and, for a head, its embedder)."""
    from app.models.manifest import load_manifest

    manifest = load_manifest(settings.models_manifest)
    if only is not None:
        wanted = {only} | {m.embedder for m in manifest.models if m.name == only and m.embedder}
        manifest = manifest.model_copy(update={"models": [m for m in manifest.models if m.name in wanted]})
    registry = Registry.from_settings(manifest, settings)
    registry.load_all()
    return registry
