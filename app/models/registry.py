"""Every manifest entry, loaded once; handed out by name or route group.

``get_ready`` is what serving asks for (503 with the reason unless the model is ready);
``get_any`` is the entry in whatever state (readiness, the index store following a reload).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from app.errors import ModelNotFound, ModelUnavailable
from app.models.loaded import LoadedModel, ModelState
from app.models.loader import LoadOptions, file_mtime, load_entry
from app.models.manifest import Manifest, ModelSpec, load_manifests
from app.settings import AdmissionSettings, ModelSettings

__all__ = ["LoadedModel", "ModelState", "Registry", "Reloaded", "open_registry", "read_manifests"]

log = logging.getLogger(__name__)


def read_manifests(settings: ModelSettings, only: str | None = None) -> Manifest:
    """The shipped manifest merged with the user's (ManifestError says what is wrong); ``only``:
    just that model and, for a head, its embedder."""
    manifest = load_manifests(settings.manifest, settings.user_manifest)
    if only is None:
        return manifest
    wanted = {only} | {m.embedder for m in manifest.models if m.name == only and m.embedder}
    return manifest.model_copy(update={"models": [m for m in manifest.models if m.name in wanted]})


@dataclass(frozen=True, slots=True)
class Reloaded:
    loaded: list[str] = field(default_factory=list)  # swapped in: new, or entry or file changed
    # Changed entries whose new version failed to load -> why; the version loaded before keeps
    # serving (an entry that was not serving before is swapped in, in its failed state).
    refused: dict[str, str] = field(default_factory=dict)


class Registry:
    def __init__(self, manifest: Manifest, options: LoadOptions | None = None) -> None:
        self.manifest = manifest
        self.options = options or LoadOptions()
        self._models = {spec.name: LoadedModel(spec) for spec in manifest.models}
        self._done = threading.Event()
        self._reloading = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        manifest: Manifest,
        settings: ModelSettings,
        admission: AdmissionSettings,
        on_batch: Callable[[str, int, float], None] | None = None,
    ) -> Registry:
        """``admission``: one TFLite interpreter per inference worker, and a SavedModel's batcher
        queues no more than the runner does."""
        options = LoadOptions(
            workers=admission.inference_workers,
            tflite_threads=settings.tflite_threads,
            batch_max_size=settings.batch_max_size,
            batch_max_wait_ms=settings.batch_max_wait_ms,
            max_queue=admission.max_queue,
            on_batch=on_batch,
        )
        return cls(manifest, options)

    # --- loading --------------------------------------------------------------------------
    def load_all(self) -> None:
        """Blocking; call from a worker thread. Never raises for a single model's problem."""
        try:
            self._load(list(self._models.values()), self._models)
        finally:
            self._done.set()

    def _load(self, models: list[LoadedModel], among: dict[str, LoadedModel]) -> None:
        # A head runs on its embedder, so embedders (and everything else) load first.
        for model in sorted(models, key=lambda m: m.spec.format == "head"):
            load_entry(model, self.manifest, among, self.options)

    def reload(self, manifest: Manifest) -> Reloaded:
        """Re-read the manifest (blocking; call from a worker thread): entries that are new, or
        whose manifest entry or file changed, are loaded aside and swapped in at once; the rest
        keep serving untouched. A changed entry that fails to load (a garbage file, a missing
        one) is refused: the version already serving stays, with the reason on it."""
        with self._reloading:
            current = self._models
            fresh: dict[str, LoadedModel] = {}
            for spec in manifest.models:
                old = current.get(spec.name)
                if old is not None and _unchanged(old, manifest, spec):
                    fresh[spec.name] = old
                else:
                    fresh[spec.name] = LoadedModel(spec)
            changed = {name for name, model in fresh.items() if model is not current.get(name)}
            for spec in manifest.models:  # a head whose embedder is reloaded is reloaded with it
                if spec.embedder in changed and spec.name not in changed:
                    fresh[spec.name] = LoadedModel(spec)
                    changed.add(spec.name)
            self._load([fresh[name] for name in changed], fresh)
            refused: dict[str, str] = {}
            for name in sorted(changed):
                new, old = fresh[name], current.get(name)
                if new.state in ("failed", "missing") and old is not None and old.state == "ready":
                    reason = new.reason or new.state
                    refused[name] = reason
                    old.refused = (new.spec, new.file_mtime_ns, reason)
                    fresh[name] = old
                    log.warning("model %s: new version refused, the loaded one serves: %s", name, reason)
            self.manifest = manifest
            self._models = fresh
            for name, old in current.items():
                if fresh.get(name) is not old and old.batcher is not None:
                    old.batcher.close()  # drains what is queued; the backend goes with its last user
            return Reloaded(loaded=sorted(changed - set(refused)), refused=refused)

    # --- lookup ---------------------------------------------------------------------------
    @property
    def loading_done(self) -> bool:
        return self._done.is_set()

    def entries(self) -> list[LoadedModel]:
        return list(self._models.values())

    def get_any(self, name: str) -> LoadedModel | None:
        """The entry serving ``name`` now, in whatever state: a reload may have replaced it."""
        return self._models.get(name)

    def is_ready(self, *, require_all: bool) -> bool:
        if not self.loading_done:
            return False
        states = [model.state for model in self._models.values()]
        if require_all:
            return all(state == "ready" for state in states)
        return "ready" in states

    def get_ready(self, name: str, *, task: str | None = None) -> LoadedModel:
        model = self._models.get(name)
        if model is None or (task is not None and model.spec.task != task):
            raise ModelNotFound(
                f"no {task or 'model'} named {name!r}",
                detail={
                    "available": sorted(n for n, m in self._models.items() if task in (None, m.spec.task))
                },
            )
        return _ready(model)

    def get_ready_for_group(self, group: str) -> LoadedModel:
        for model in self._models.values():
            if model.spec.group == group:
                return _ready(model)
        raise ModelUnavailable(
            f"no model is configured for group {group!r}: add one with group = {group!r} to the manifest",
            detail={"group": group},
        )

    def close(self) -> None:
        for model in self._models.values():
            if model.batcher is not None:
                model.batcher.close()
                model.batcher = None
            if model.backend is not None:
                model.backend.close()
                model.backend = None


def _unchanged(old: LoadedModel, manifest: Manifest, spec: ModelSpec) -> bool:
    """Serving ``old`` is still right for ``spec``: the same entry on the same file, or the very
    version that was refused last time (not retried until the entry or the file changes)."""
    mtime = file_mtime(manifest, spec)
    if old.spec == spec and old.file_mtime_ns == mtime:
        return True
    return old.refused is not None and old.refused[:2] == (spec, mtime)


def _ready(model: LoadedModel) -> LoadedModel:
    if model.state == "ready":
        return model
    reason = model.reason or "still loading"
    raise ModelUnavailable(
        f"model {model.spec.name} is {model.state}: {reason}",
        detail={"model": model.spec.name, "state": model.state},
        headers={"Retry-After": "5"} if model.state in ("pending", "loading") else None,
    )


def open_registry(
    settings: ModelSettings, admission: AdmissionSettings | None = None, only: str | None = None
) -> Registry:
    """The loading the server's lifespan does, in the foreground, for the CLI and batch jobs
    (``only``: just that model and, for a head, its embedder; ``admission``: from the environment
    unless given, e.g. ``AdmissionSettings(inference_workers=1)`` for one interpreter per model).
    The caller closes it."""
    registry = Registry.from_settings(
        read_manifests(settings, only), settings, admission or AdmissionSettings()
    )
    registry.load_all()
    return registry


@contextmanager
def ready_model(
    settings: ModelSettings, name: str, task: str, admission: AdmissionSettings | None = None
) -> Iterator[LoadedModel]:
    """Open the registry with just ``name`` (and a head's embedder), hand out the ready model,
    close everything on exit. ``ModelNotFound``/``ModelUnavailable`` say why it is not usable."""
    registry = open_registry(settings, admission, only=name)
    try:
        yield registry.get_ready(name, task=task)
    finally:
        registry.close()
