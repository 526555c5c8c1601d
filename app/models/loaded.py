"""A manifest entry as the server holds it: its state, and once ready, the means to run it."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.core import InputSpec, Label, softmax
from app.errors import ModelUnavailable
from app.models.backends.base import Backend, FeatureBackend
from app.models.batcher import MicroBatcher
from app.models.manifest import ModelSpec
from app.models.scope import ModelScope

ModelState = Literal["pending", "loading", "ready", "missing", "failed"]


@dataclass(frozen=True, slots=True)
class TaxonomyFiles:
    """A classifier's taxonomy files, per label: link-gbif's where it has the label, else the
    shipped offline one (NCBI). Either may be absent."""

    linked: Path | None
    offline: Path | None

    @classmethod
    def of(cls, linked: Path | None, offline: Path | None) -> TaxonomyFiles | Path | None:
        """Just the path when there is one file (what an index or a test hands over)."""
        if offline is None:
            return linked
        return cls(linked, offline)


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
    # Where this model's taxonomy is (resolved against the manifest): link-gbif's file, or that
    # over the shipped offline one (``TaxonomyFiles``). The enrich side reads it, the registry
    # never does.
    taxonomy_path: TaxonomyFiles | Path | None = None
    batcher: MicroBatcher | None = None  # SavedModels: concurrent requests share one call
    input: InputSpec | None = None  # what to decode to: the spec's, or a head's embedder's
    file_mtime_ns: int | None = None  # a reload reloads an entry whose file changed
    scope: ModelScope | None = None  # classifiers: calibration and the open-set signal
    # The last reload's new version of this entry that failed to load: (entry, file mtime, why).
    # This one keeps serving; the same version is not retried until the entry or file changes.
    refused: tuple[ModelSpec, int | None, str] | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def input_spec(self) -> InputSpec:
        return self.input or self.spec.input

    @property
    def output_dim(self) -> int | None:
        return self.backend.output_dim if self.backend is not None else None

    def predict(self, batch: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
        """Class probabilities (a classifier; softmax applied to logits) or features (an
        embedder) for a preprocessed batch; runs in a worker thread."""
        if self.backend is None:
            raise ModelUnavailable(f"model {self.spec.name} is {self.state}: {self.reason}")
        out = self.backend.predict(batch)
        return softmax(out) if self.spec.output == "logits" else out

    def predict_with_features(
        self, batch: npt.NDArray[np.generic]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32] | None]:
        """``predict`` plus the pre-logit features from the same call, where the backend gives
        them (None otherwise)."""
        backend = self.backend
        if isinstance(backend, FeatureBackend):
            out, features = backend.predict_with_features(batch)
            return (softmax(out) if self.spec.output == "logits" else out), features
        return self.predict(batch), None
