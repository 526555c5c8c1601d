"""Species lookup by image similarity: POST /img_url, and the index it searches
(GET /v1/index, POST /v1/index/items to add photos of a species without retraining)."""

from __future__ import annotations

import asyncio
import time
from typing import Annotated

import numpy as np
import numpy.typing as npt
from fastapi import APIRouter, File, Form, Header, UploadFile

from app.api.access import require_admin
from app.api.image_input import ImageInputDep
from app.api.routes.classify import TopK
from app.api.schemas import (
    IndexInfo,
    IndexItemsResponse,
    LookupResponse,
    LookupResult,
    Timings,
    error_responses,
)
from app.deps import FetcherDep, IndexStoreDep, MetricsDep, RunnerDep, SettingsDep
from app.enrich.taxonomy import rollup
from app.errors import BadRequest, PayloadTooLarge
from app.index.artifacts import Label, SpeciesIndex
from app.index.store import IndexStore
from app.index.vote import SpeciesVote, query
from app.models.registry import LoadedModel
from app.pipeline import process
from app.settings import Settings

router = APIRouter(tags=["lookup"])
admin_router = APIRouter(tags=["lookup"])  # the admin token, not API keys, guards index writes


def index_info(index: SpeciesIndex) -> IndexInfo:
    m = index.manifest
    return IndexInfo(
        version=m.version,
        embedder=m.embedder.name,
        n_vectors=m.n_vectors,
        n_species=m.n_species,
        index_type=m.index_type,
        dim=m.dim,
        created_at=m.created_at,
    )


async def current_index(store: IndexStore) -> tuple[SpeciesIndex, LoadedModel]:
    if store.stale:  # another process published a version: load it off the event loop
        await asyncio.to_thread(store.refresh)
    return store.get()


def _search(
    index: SpeciesIndex, features: npt.NDArray[np.float32], settings: Settings
) -> tuple[list[SpeciesVote], float]:
    """project -> k-NN -> vote, in a worker thread (an exact search over 100k photos takes ms)."""
    started = time.perf_counter()
    # Every species among the neighbours: the rollup needs them all, the answer the first top_k.
    (votes,) = query(
        index,
        features[np.newaxis],
        neighbours=settings.index_neighbours,
        ef_search=settings.index_ef_search,
        temperature=settings.index_temperature,
        top_k=len(index.labels),
    )
    return votes, (time.perf_counter() - started) * 1000


@router.post(
    "/img_url",
    response_model=LookupResponse,
    responses=error_responses(400, 413, 415, 422, 502, 503, 504),
    summary="Identify a species by similarity to the indexed photos",
    description=(
        "Embeds the photo, finds the most similar photos in the species index and lets them vote. "
        "Covers every species in the index (add more with POST /v1/index/items). Send `img_url` "
        "(query) or a multipart upload in `image`."
    ),
)
async def lookup(
    image: ImageInputDep,
    store: IndexStoreDep,
    runner: RunnerDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    top_k: TopK = None,
) -> LookupResponse:
    index, embedder = await current_index(store)
    source = await image.load(fetcher, settings)
    started = time.perf_counter()
    out = await process(runner, embedder, source.data, settings.max_image_pixels)
    metrics.observe_image(embedder.spec.name, source, out)
    votes, search_ms = await runner.run(_search, index, out.scores, settings)
    results = [
        LookupResult(
            rank=position,
            index=v.label,
            scientific_name=index.labels[v.label].scientific_name,
            common_name=index.labels[v.label].common_name,
            score=v.score,
            neighbours=v.neighbours,
            similarity=v.similarity,
            taxonomy=store.taxonomy.get(index.labels[v.label].scientific_name),
        )
        for position, v in enumerate(votes[: top_k or settings.top_k_default], 1)
    ]
    summed = rollup(
        ((index.labels[v.label].scientific_name, v.score) for v in votes),
        store.taxonomy,
        settings.rollup_threshold,
    )
    return LookupResponse(
        index=index_info(index),
        results=results,
        no_match=not results or results[0].score < settings.min_score,
        rollup=summed,
        image=source.info(out.image),
        timings_ms=Timings(
            fetch_ms=source.fetch_ms,
            decode_ms=out.decode_ms,
            infer_ms=out.infer_ms,
            search_ms=search_ms,
            total_ms=(time.perf_counter() - started) * 1000 + (source.fetch_ms or 0.0),
        ),
    )


@router.get(
    "/v1/index",
    response_model=IndexInfo,
    responses=error_responses(503),
    summary="The species index /img_url searches",
)
async def get_index(store: IndexStoreDep) -> IndexInfo:
    index, _ = await current_index(store)
    return index_info(index)


@admin_router.post(
    "/v1/index/items",
    response_model=IndexItemsResponse,
    status_code=201,
    responses=error_responses(400, 401, 403, 413, 415, 422, 503),
    summary="Add photos of a species to the index (no retraining)",
    description=(
        "Multipart: one or more `image` files and the `scientific_name` they show (optionally "
        "`common_name`). The photos are embedded with the index's embedder and published as a new "
        "index version, atomically; /img_url answers from it at once."
    ),
)
async def add_items(
    store: IndexStoreDep,
    runner: RunnerDep,
    settings: SettingsDep,
    image: Annotated[list[UploadFile], File(description="photos of the species")],
    scientific_name: Annotated[
        str, Form(min_length=3, max_length=200, pattern=r"^[A-Z][a-z]+( [a-z\-]+){0,3}$")
    ],
    common_name: Annotated[str | None, Form(max_length=200)] = None,
    authorization: Annotated[str | None, Header()] = None,
) -> IndexItemsResponse:
    require_admin(settings, authorization, "POST /v1/index/items")
    index, embedder = await current_index(store)
    features: list[npt.NDArray[np.float32]] = []
    for upload in image:
        data = await upload.read(settings.max_upload_bytes + 1)
        if len(data) > settings.max_upload_bytes:
            raise PayloadTooLarge(f"{upload.filename} is larger than {settings.max_upload_bytes} bytes")
        if not data:
            raise BadRequest(f"{upload.filename} is empty")
        output = await process(runner, embedder, data, settings.max_image_pixels)
        features.append(output.scores)
    known = any(label.scientific_name == scientific_name for label in index.labels)
    label = Label(scientific_name=scientific_name, common_name=common_name)
    extended = await asyncio.to_thread(store.add, np.stack(features), [label] * len(features))
    return IndexItemsResponse(
        added=len(features), species=scientific_name, new_species=not known, index=index_info(extended)
    )
