"""Classification: the legacy group routes (/bird_url, /insect_url, /plant_url) and
/v1/classify/{model}, which serves any classifier in the manifest. Each is an identification of
one photo by one named model, scored by the model's own probabilities (``app.identification``).
Both take the steering parameters (``app.api.steering``: taxon, species_list, lat/lon/date with
geo, min_score, rollup_threshold); without them the answer is the model's own, as it always was."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Path

from app.api import presenters
from app.api.deps import FetcherDep, IdentifierDep, RegistryDep, SettingsDep
from app.api.image_input import ImageInput, ImageInputDep
from app.api.params import TopK
from app.api.schemas import ClassificationResponse, error_responses
from app.api.steering import GivenPlace, PlaceDep, SteeringDep
from app.identification.request import Request, Steering
from app.identification.service import Identifier
from app.imaging.fetch import ImageFetcher
from app.settings import Settings

router = APIRouter(tags=["classify"])

# The groups the original service had; each is served by the manifest entry with that group.
LEGACY_GROUPS = {
    "bird": "birds (AIY birds_V1)",
    "insect": "insects (AIY insects_V1)",
    "plant": "plants (AIY plants_V1)",
}

ERRORS = error_responses(400, 404, 409, 413, 415, 422, 502, 503, 504)
STEERING = (
    " Steer it: `taxon` or `species_list` rank only the species they keep (renormalised, said in "
    "`filters`); `lat`/`lon` (+ `date`) with `geo=prior|filter|off` weigh them by GBIF's records "
    "near there (`vision_score`, `geo_score`, `combined_score` on each result); `min_score` and "
    "`rollup_threshold` replace the settings for this request."
)
ClassifierName = Annotated[str, Path(max_length=64, description="a classifier's manifest name")]


def _legacy_route(group: str) -> Callable[..., Awaitable[ClassificationResponse]]:
    async def endpoint(
        image: ImageInputDep,
        registry: RegistryDep,
        identifier: IdentifierDep,
        fetcher: FetcherDep,
        settings: SettingsDep,
        steering: SteeringDep,
        place: PlaceDep,
        top_k: TopK = None,
    ) -> ClassificationResponse:
        model = registry.get_ready_for_group(group)  # before the download: a disabled model costs none
        return await _classify(model.name, image, identifier, fetcher, settings, steering, place, top_k)

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
            "`img_url` (query) or as a multipart upload in `image`." + STEERING
        ),
    )


@router.post(
    "/v1/classify/{model_name}",
    response_model=ClassificationResponse,
    responses=ERRORS,
    summary="Identify species with any classifier in the manifest",
    description="The same as the group routes, with the classifier named." + STEERING,
)
async def classify_with(
    model_name: ClassifierName,
    image: ImageInputDep,
    identifier: IdentifierDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    steering: SteeringDep,
    place: PlaceDep,
    top_k: TopK = None,
) -> ClassificationResponse:
    return await _classify(model_name, image, identifier, fetcher, settings, steering, place, top_k)


async def _classify(
    model: str,
    image: ImageInput,
    identifier: Identifier,
    fetcher: ImageFetcher,
    settings: Settings,
    steering: Steering,
    place: GivenPlace,
    top_k: int | None,
) -> ClassificationResponse:
    plan = identifier.plan(model=model, steering=steering)  # an unknown taxon costs no download
    photo = await image.load(fetcher, settings.images.max_upload_bytes)
    request = Request(
        [photo],
        place.place,
        steering,
        top_k,
        model=model,
        scores="model",
        with_index=False,
        date=place.date,
        use_photo_metadata=place.use_photo_metadata,
    )
    return presenters.classification(await identifier.identify(request, plan))
