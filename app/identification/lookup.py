"""The species index's answer: embed, project, nearest indexed photos, vote. In: a photo (or the
features ``run`` already has of an observation's photos). Out: a ``LookupAnswer``. The one path
for POST /img_url, /v1/identify's ``index`` and ``evaluate --index``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.taxonomies import TaxonomyBook, index_taxonomy_path
from app.enrich.taxonomy import Rollup, Taxon, rollup
from app.errors import IndexUnavailable
from app.identification.run import run_photo
from app.identification.timings import InferenceObserver, Timings
from app.imaging.decode import DecodedImage
from app.imaging.photo import Photo
from app.index.artifacts import SpeciesIndex
from app.index.store import IndexStore
from app.index.vote import SpeciesVote, query
from app.models.inference import infer_files
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner
from app.settings import IndexSettings, RankingSettings

LookupNoMatch = Literal["empty_index", "low_confidence"]


@dataclass(frozen=True, slots=True)
class LookupHit:
    rank: int
    index: int  # label id in the species index
    label: Label
    score: float  # share of the neighbours' similarity-weighted vote
    neighbours: int
    similarity: float
    taxon: Taxon | None


@dataclass(frozen=True, slots=True)
class LookupAnswer:
    index: SpeciesIndex
    species: list[LookupHit]
    no_match_reason: LookupNoMatch | None
    rollup: Rollup | None
    photo: Photo | None = None
    image: DecodedImage | None = None
    timings: Timings | None = None

    @property
    def no_match(self) -> bool:
        return self.no_match_reason is not None


@dataclass
class FileLookups:
    paths: list[Path]
    results: list[LookupAnswer | None]  # None: the photo could not be read
    failures: list[tuple[Path, str]]


class Lookup:
    def __init__(
        self,
        store: IndexStore | None,
        runner: InferenceRunner,
        taxonomies: TaxonomyBook,
        index: IndexSettings,
        ranking: RankingSettings,
        *,
        max_pixels: int,
        observer: InferenceObserver | None = None,
        root: Path | None = None,
    ) -> None:
        """``store``: the server's live index; None offline (``evaluate --index``), where the
        index is handed to ``identify_files`` and ``root`` is its folder."""
        self.store = store
        self.root = root if root is not None else (store.dir.root if store is not None else None)
        self.runner = runner
        self.taxonomies = taxonomies
        self.settings = index
        self.ranking = ranking
        self.max_pixels = max_pixels
        self.observer = observer

    async def current(self) -> tuple[SpeciesIndex, LoadedModel]:
        """The index to answer from and its embedder (IndexUnavailable when there is none)."""
        if self.store is None:
            raise IndexUnavailable("no species index is being served")
        if self.store.stale:  # another process published a version: load it off the event loop
            await asyncio.to_thread(self.store.refresh)
        return self.store.get()

    async def identify(self, photo: Photo, top_k: int | None = None) -> LookupAnswer:
        index, embedder = await self.current()
        started = time.perf_counter()
        run = await run_photo(self.runner, photo, [], embedder, self.max_pixels, observer=self.observer)
        assert run.index_features is not None  # the embedder was asked
        search_started = time.perf_counter()
        (votes,) = await self.runner.run(self.votes, index, run.index_features[np.newaxis])
        search_ms = (time.perf_counter() - search_started) * 1000
        answer = self.interpret(index, votes, top_k)
        timings = Timings(
            fetch_ms=photo.fetch_ms,
            decode_ms=run.decode_ms,
            infer_ms=run.infer_ms[embedder.name],
            search_ms=search_ms,
            total_ms=(time.perf_counter() - started) * 1000 + (photo.fetch_ms or 0.0),
        )
        return LookupAnswer(
            index, answer.species, answer.no_match_reason, answer.rollup, photo, run.image, timings
        )

    def votes(self, index: SpeciesIndex, features: npt.NDArray[np.float32]) -> list[list[SpeciesVote]]:
        """project -> k-NN -> vote, in a worker thread (an exact search over 100k photos takes ms).
        Every species among the neighbours: the rollup needs them all, the answer the first top_k."""
        return query(
            index,
            features,
            neighbours=self.settings.neighbours,
            ef_search=self.settings.ef_search,
            temperature=self.settings.temperature,
            top_k=len(index.labels),
        )

    def interpret(
        self,
        index: SpeciesIndex,
        votes: list[SpeciesVote],
        top_k: int | None = None,
        root: Path | None = None,
    ) -> LookupAnswer:
        """``root``: the index's folder (its taxonomy file), when it is not the served one."""
        root = root or self.root
        taxonomy = self.taxonomies.get(index_taxonomy_path(root) if root else None)
        species = [
            LookupHit(
                rank=position,
                index=v.label,
                label=index.labels[v.label],
                score=v.score,
                neighbours=v.neighbours,
                similarity=v.similarity,
                taxon=taxonomy.get(index.labels[v.label].scientific_name),
            )
            for position, v in enumerate(votes[: top_k or self.ranking.top_k_default], 1)
        ]
        summed = rollup(
            ((index.labels[v.label].scientific_name, v.score) for v in votes),
            taxonomy,
            self.ranking.rollup_threshold,
        )
        reason: LookupNoMatch | None = None
        if not species:
            reason = "empty_index"
        elif species[0].score < self.ranking.min_score:
            reason = "low_confidence"
        return LookupAnswer(index, species, reason, summed)

    def identify_files(
        self,
        index: SpeciesIndex,
        embedder: LoadedModel,
        paths: list[Path],
        *,
        top_k: int | None = None,
        workers: int,
        on_progress: Callable[[int], None] | None = None,
        root: Path | None = None,
    ) -> FileLookups:
        """Photos on disk through the same embed -> vote (blocking: the CLI's evaluate --index);
        ``root``: the index's folder, when it is not the served one."""
        inferred = infer_files(
            embedder, paths, max_pixels=self.max_pixels, workers=workers, on_progress=on_progress
        )
        results: list[LookupAnswer | None] = [None] * len(paths)
        good = np.flatnonzero(inferred.ok)
        if good.size:
            for i, votes in zip(good, self.votes(index, inferred.outputs[good]), strict=True):
                results[i] = self.interpret(index, votes, top_k, root)
        return FileLookups(paths, results, inferred.failures)
