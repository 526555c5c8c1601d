"""What the server and the offline tools share about an index's vectors: which embedder made
them, the check that queries are embedded the same way, and appending photos to a version."""

from __future__ import annotations

import numpy as np

from app.core import Label
from app.index.artifacts import EmbedderIdentity, IndexDir, IndexLoadError, SpeciesIndex, new_version_name
from app.models.registry import LoadedModel


def identity_of(embedder: LoadedModel) -> EmbedderIdentity:
    if embedder.output_dim is None:
        raise ValueError(f"embedder {embedder.spec.name} is not loaded")
    return EmbedderIdentity(
        name=embedder.spec.name,
        sha256=embedder.sha256,
        handle=embedder.spec.handle,
        output_key=embedder.spec.output_key,
        input=embedder.input_spec,
        output_dim=embedder.output_dim,
    )


def check_embedder(species_index: SpeciesIndex, embedder: LoadedModel) -> None:
    """Refuses an index whose vectors came from another model (or another tensor, or other
    preprocessing) than the one that would embed the queries."""
    mismatches = species_index.manifest.embedder.mismatches(identity_of(embedder))
    if mismatches:
        raise IndexLoadError(
            f"index {species_index.manifest.version} was built with another embedder than this "
            f"server's {embedder.spec.name} ({'; '.join(mismatches)}): rebuild it with "
            f"`python -m app build-index --embedder {embedder.spec.name}`"
        )


def add_photos(
    index_dir: IndexDir, embedder: LoadedModel, features: np.ndarray, labels: list[Label]
) -> tuple[SpeciesIndex, SpeciesIndex]:
    """Appends embedded photos to the current version and publishes the result; returns the
    version extended and the new one. Callers hold ``index_dir.writer_lock()`` so concurrent
    writers never lose each other's photos."""
    current = index_dir.load()
    check_embedder(current, embedder)
    extended = current.extended(features, labels, new_version_name())
    index_dir.publish(extended)
    return current, extended
