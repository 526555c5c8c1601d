"""Adding photos of a species to the species index without retraining (POST /v1/index/items)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import numpy as np

from app.core import Label
from app.identification.lookup import Lookup
from app.identification.run import run_photo
from app.imaging.photo import Photo
from app.index.artifacts import SpeciesIndex
from app.models.runner import InferenceRunner


@dataclass(frozen=True, slots=True)
class AddedPhotos:
    added: int
    species: str
    new_species: bool  # the species was not in the index before
    index: SpeciesIndex  # the version published with them


class IndexWriter:
    def __init__(self, lookup: Lookup, runner: InferenceRunner, *, max_pixels: int) -> None:
        self.lookup = lookup
        self.runner = runner
        self.max_pixels = max_pixels

    async def add(self, photos: list[Photo], scientific_name: str, common_name: str | None) -> AddedPhotos:
        """Embeds each photo with the index's own embedder (off the event loop), appends them to
        the current version and publishes the result atomically. A volume that cannot take the
        new version is an error with nothing changed: 507 when it is full, 503 when read-only."""
        _, embedder = await self.lookup.current()
        runs = [await run_photo(self.runner, p, [], embedder, self.max_pixels) for p in photos]
        features = [run.index_features for run in runs if run.index_features is not None]
        label = Label(scientific_name=scientific_name, common_name=common_name)
        assert self.lookup.store is not None  # current() found it
        before, after = await asyncio.to_thread(
            self.lookup.store.add, np.stack(features), [label] * len(features)
        )
        known = any(existing.scientific_name == scientific_name for existing in before.labels)
        return AddedPhotos(len(features), scientific_name, not known, after)
