"""Classification: the legacy group routes (/bird_url, /insect_url, /plant_url) and
/v1/classify/{model}, which serves any classifier in the manifest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.api import presenters
from app.api.deps import FetcherDep, IdentifierDep, RegistryDep, SettingsDep
from app.api.image_input import ImageInputDep
from app.api.schemas import ClassificationResponse, error_responses

router = APIRouter(tags=["classify"])

# The groups the original service had; each is served by the manifest entry with that group.
LEGACY_GROUPS = {
    "bird": "birds (AIY birds_V1)",
    "insect": "insects (AIY insects_V1)",
    "plant": "plants (AIY plants_V1)",
}

TopK = Annotated[
    int | None, Query(ge=1, le=100, description="how many species to return (default 5, at most 100)")
]
ERRORS = error_responses(400, 404, 413, 415, 422, 502, 503, 504)
ClassifierName = Annotated[str, Path(max_length=64, description="a classifier's manifest name")]


def _legacy_route(group: str) -> Callable[..., Awaitable[ClassificationResponse]]:
    async def endpoint(
        image: ImageInputDep,
        registry: RegistryDep,
        identifier: IdentifierDep,
        fetcher: FetcherDep,
        settings: SettingsDep,
        top_k: TopK = None,
    ) -> ClassificationResponse:
        model = registry.get_ready_for_group(group)  # before the download: a disabled model costs none
        photo = await image.load(fetcher, settings.images.max_upload_bytes)
        return presenters.classification(await identifier.identify(model, photo, top_k))

    endpoint.__name__ = f"classify_{group}"
    return endpoint


for _group, _what in LEGACY_GROUPS.items():
    router.add_api_route(
        f"/{_group}_url",
        _legacy_route(_group),
        methods=["POST"],
        response_model=ClassificationResponse,
        responses=ERRORS,
        summary=f"Identify {_what} in a photo",
        description=(
            f"Ranks the species of the model whose manifest group is `{_group}`. Send the photo as "
            "`img_url` (query) or as a multipart upload in `image`."
        ),
    )


@router.post(
    "/v1/classify/{model_name}",
    response_model=ClassificationResponse,
    responses=ERRORS,
    summary="Identify species with any classifier in the manifest",
)
async def classify_with(
    model_name: ClassifierName,
    image: ImageInputDep,
    registry: RegistryDep,
    identifier: IdentifierDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    top_k: TopK = None,
) -> ClassificationResponse:
    model = registry.get_ready(model_name, task="classifier")
    photo = await image.load(fetcher, settings.images.max_upload_bytes)
    return presenters.classification(await identifier.identify(model, photo, top_k))
