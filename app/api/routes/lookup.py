"""Species lookup by image similarity: POST /img_url, and the index it searches
(GET /v1/index, POST /v1/index/items to add photos of a species without retraining)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile

from app.api import presenters
from app.api.deps import AdminDep, FetcherDep, IndexWriterDep, LookupDep, SettingsDep
from app.api.image_input import ImageInputDep, read_upload
from app.api.params import TopK
from app.api.schemas import IndexInfo, IndexItemsResponse, LookupResponse, error_responses

router = APIRouter(tags=["lookup"])
admin_router = APIRouter(tags=["lookup"])  # the admin token, not API keys, guards index writes


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
    service: LookupDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    top_k: TopK = None,
) -> LookupResponse:
    await service.current()  # before the download: no index, no fetch
    photo = await image.load(fetcher, settings.images.max_upload_bytes)
    return presenters.lookup(await service.identify(photo, top_k))


@router.get(
    "/v1/index",
    response_model=IndexInfo,
    responses=error_responses(503),
    summary="The species index /img_url searches",
)
async def get_index(service: LookupDep) -> IndexInfo:
    index, _ = await service.current()
    return presenters.index_info(index)


@admin_router.post(
    "/v1/index/items",
    response_model=IndexItemsResponse,
    status_code=201,
    responses=error_responses(400, 401, 403, 413, 415, 422, 503, 507),
    dependencies=[AdminDep],
    summary="Add photos of a species to the index (no retraining)",
    description=(
        "Multipart: one or more `image` files and the `scientific_name` they show (optionally "
        "`common_name`). The photos are embedded with the index's embedder and published as a new "
        "index version, atomically; /img_url answers from it at once."
    ),
)
async def add_items(
    writer: IndexWriterDep,
    settings: SettingsDep,
    image: Annotated[list[UploadFile], File(description="photos of the species")],
    scientific_name: Annotated[
        str, Form(min_length=3, max_length=200, pattern=r"^[A-Z][a-z]+( [a-z\-]+){0,3}$")
    ],
    common_name: Annotated[str | None, Form(max_length=200)] = None,
) -> IndexItemsResponse:
    await writer.lookup.current()  # 503 before reading the photos when there is no index
    cap = settings.images.max_upload_bytes
    photos = [await read_upload(upload, cap, one_of_many=True) for upload in image]
    added = await writer.add(photos, scientific_name, common_name)
    return IndexItemsResponse(
        added=added.added,
        species=added.species,
        new_species=added.new_species,
        index=presenters.index_info(added.index),
    )
