"""POST /v1/identify: one observation (1 to 5 photos of one organism), every model at once, with
where and when, and an honest "I don't know"."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, File, Query, UploadFile

from app.api import presenters
from app.api.deps import FetcherDep, IdentifierDep, SettingsDep
from app.api.image_input import ImageInput, read_upload
from app.api.observation_schemas import IdentifyResponse
from app.api.params import TopK
from app.api.schemas import error_responses
from app.api.steering import PlaceDep, SteeringDep
from app.errors import BadRequest, ServiceError
from app.identification.request import MAX_PHOTOS, Request
from app.imaging.fetch import ImageFetcher, parse_url
from app.imaging.photo import Photo

router = APIRouter(tags=["identify"])


@router.post(
    "/v1/identify",
    response_model=IdentifyResponse,
    responses=error_responses(400, 404, 409, 413, 415, 422, 502, 503, 504),
    summary="Identify an observation: 1-5 photos, every model, a place and a date",
    description=(
        "Send 1 to 5 photos of ONE organism: repeat the multipart field `image`, or the query "
        "parameter `img_url` (or both). Each photo is fetched and decoded once and read by every "
        "ready classifier; the photos are combined per model, the model whose scope fits best is "
        "chosen, and with `lat`/`lon` (and `date`) its species are re-ranked by what GBIF has "
        "recorded near there. When no model covers the photos the answer is `no_match` with the "
        "reason (`not_an_organism`, `out_of_scope`) and no species; `low_confidence` lists guesses "
        "and the rollup. `groups` restricts the models (e.g. `groups=bird`). Steer the answer: "
        "`taxon` (a GBIF key or a name of any rank) or `species_list` (an installed list's name, or "
        "a file in the multipart field of that name) rank only the species they keep, renormalised "
        "(`filters` says what was kept; a model with none kept is not asked); `geo=prior|filter|off` "
        "says what the place does; `min_score` and `rollup_threshold` replace the settings."
    ),
)
async def identify(
    identifier: IdentifierDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    steering: SteeringDep,
    place: PlaceDep,
    image: Annotated[list[UploadFile] | None, File(description="photos of one organism (1-5)")] = None,
    img_url: Annotated[list[str] | None, Query(max_length=MAX_PHOTOS, description="photo addresses")] = None,
    groups: Annotated[list[str] | None, Query(description="only these groups' models, e.g. bird")] = None,
    top_k: TopK = None,
) -> IdentifyResponse:
    uploads, urls = image or [], img_url or []
    if not 1 <= len(uploads) + len(urls) <= MAX_PHOTOS:
        raise BadRequest(
            f"send 1 to {MAX_PHOTOS} photos of one organism (repeat `image` or `img_url`); "
            f"got {len(uploads) + len(urls)}",
            detail={"photos": len(uploads) + len(urls), "max": MAX_PHOTOS},
        )
    numbered = list(enumerate(urls, len(uploads) + 1))  # photos are numbered uploads first
    for number, url in numbered:
        try:
            parse_url(url)  # a malformed address is a 400 before anything runs
        except ServiceError as exc:
            raise _naming(exc, number, url) from None
    chosen = frozenset(groups) if groups else None
    plan = identifier.plan(groups=chosen, steering=steering)  # 400/404/409/503 before any download
    cap = settings.images.max_upload_bytes
    photos = [await _read(number, upload, cap) for number, upload in enumerate(uploads, 1)]
    photos += await asyncio.gather(*(_fetch(number, url, fetcher, cap) for number, url in numbered))
    request = Request(
        photos,
        place.place,
        steering,
        top_k,
        groups=chosen,
        date=place.date,
        use_photo_metadata=place.use_photo_metadata,
    )
    return presenters.observation(await identifier.identify(request, plan))


async def _read(number: int, upload: UploadFile, cap: int) -> Photo:
    try:
        return await read_upload(upload, cap, one_of_many=True)
    except ServiceError as exc:
        raise _naming(exc, number, upload.filename or "upload") from None


async def _fetch(number: int, url: str, fetcher: ImageFetcher, cap: int) -> Photo:
    try:
        return await ImageInput(url=url, upload=None).load(fetcher, cap)
    except ServiceError as exc:
        raise _naming(exc, number, url) from None


def _naming(exc: ServiceError, number: int, name: str) -> ServiceError:
    """The error of one photo of several says which (as the decode errors do)."""
    exc.message = f"photo {number} ({name[:200]}): {exc.message}"
    exc.detail = {**exc.detail, "photo": number}
    return exc
