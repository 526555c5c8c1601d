"""Classification: the legacy group routes (/bird_url, /insect_url, /plant_url) and
/v1/classify/{model}, which serves any classifier in the manifest."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Annotated

import numpy as np
from fastapi import APIRouter, Path, Query

from app.api.image_input import ImageInput, ImageInputDep
from app.api.schemas import ClassificationResponse, SpeciesResult, Timings, error_responses
from app.deps import FetcherDep, MetricsDep, RegistryDep, RunnerDep, SettingsDep
from app.enrich.taxonomy import rollup
from app.imaging.fetch import ImageFetcher
from app.metrics import Metrics
from app.models.registry import LoadedModel
from app.models.runner import InferenceRunner
from app.pipeline import process
from app.ranking import rank
from app.settings import Settings

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


async def classify(
    model: LoadedModel,
    image: ImageInput,
    top_k: int | None,
    settings: Settings,
    runner: InferenceRunner,
    fetcher: ImageFetcher,
    metrics: Metrics,
) -> ClassificationResponse:
    source = await image.load(fetcher, settings)
    started = time.perf_counter()
    output = await process(runner, model, source.data, settings.max_image_pixels)
    metrics.observe_image(model.spec.name, source, output)
    ranking = rank(
        output.scores,
        top_k=top_k or settings.top_k_default,
        background_index=model.spec.background_index,
        min_score=settings.min_score,
    )
    results = [
        SpeciesResult(
            rank=position,
            index=index,
            scientific_name=model.labels[index].scientific_name,
            common_name=model.labels[index].common_name,
            score=score,
            taxonomy=model.taxonomy.get(model.labels[index].scientific_name),
        )
        for position, (index, score) in enumerate(zip(ranking.indices, ranking.scores, strict=True), 1)
    ]
    # Climb the taxonomy only when no species is confident; over every class, not just top_k
    # (the classes with a score at all: most of the AIY models' 1000-2000 are exactly 0).
    background = model.spec.background_index
    summed = rollup(
        (
            (model.labels[i].scientific_name, float(output.scores[i]))
            for i in np.flatnonzero(output.scores > 0)
            if i != background
        ),
        model.taxonomy,
        settings.rollup_threshold,
    )
    total_ms = (time.perf_counter() - started) * 1000 + (source.fetch_ms or 0.0)
    return ClassificationResponse(
        model=model.spec.name,
        model_version=model.spec.version,
        results=results,
        no_match=ranking.no_match,
        no_match_reason=ranking.no_match_reason,
        background_score=ranking.background_score,
        rollup=summed,
        image=source.info(output.image),
        timings_ms=Timings(
            fetch_ms=source.fetch_ms,
            decode_ms=output.decode_ms,
            infer_ms=output.infer_ms,
            total_ms=total_ms,
        ),
    )


def _legacy_route(group: str) -> Callable[..., Awaitable[ClassificationResponse]]:
    async def endpoint(
        image: ImageInputDep,
        registry: RegistryDep,
        runner: RunnerDep,
        fetcher: FetcherDep,
        settings: SettingsDep,
        metrics: MetricsDep,
        top_k: TopK = None,
    ) -> ClassificationResponse:
        return await classify(registry.by_group(group), image, top_k, settings, runner, fetcher, metrics)

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
    runner: RunnerDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    top_k: TopK = None,
) -> ClassificationResponse:
    model = registry.get(model_name, task="classifier")
    return await classify(model, image, top_k, settings, runner, fetcher, metrics)
