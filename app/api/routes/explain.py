"""Saliency: which part of the photo the model's top answer rests on (occlusion sensitivity)."""

from __future__ import annotations

import time
from typing import Annotated, Literal
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import Response

from app.api.deps import ExplainSlotsDep, FetcherDep, RegistryDep, RunnerDep, SettingsDep
from app.api.image_input import ImageInputDep
from app.api.presenters import image_info
from app.api.routes.classify import ClassifierName
from app.api.schemas import Explanation, Timings, error_responses
from app.errors import Overloaded
from app.explain import explain

router = APIRouter(tags=["explain"])


@router.post(
    "/v1/explain/{model_name}",
    response_model=Explanation,
    responses={
        200: {
            "content": {"image/png": {}},
            "description": "the photo under a heat map (format=png, the default), or the grid as JSON",
        },
        **error_responses(400, 404, 413, 415, 422, 502, 503, 504),
    },
    summary="Show where the model looked for its top answer",
    description=(
        "Occlusion sensitivity for the top class of any classifier in the manifest (TFLite, "
        "SavedModel or trained head): a grey square slides over the model's input and the drop "
        "in the top class's probability is mapped. `format=png` returns the photo under the heat "
        "map (headers `X-Explained-Class`, `X-Explained-Score`); `format=json` returns the grid. "
        "About 170 model calls: slower than a classification."
    ),
)
async def explain_photo(
    model_name: ClassifierName,
    image: ImageInputDep,
    registry: RegistryDep,
    runner: RunnerDep,
    fetcher: FetcherDep,
    settings: SettingsDep,
    slots: ExplainSlotsDep,
    format: Annotated[Literal["png", "json"], Query(description="png: the overlay; json: the grid")] = "png",
) -> Response | Explanation:
    model = registry.get_ready(model_name, task="classifier")
    if slots.locked():
        raise Overloaded(
            f"{settings.admission.explain_concurrency} saliency map(s) already in progress; retry shortly",
            retry_after_s=2,
        )
    async with slots:
        photo = await image.load(fetcher, settings.images.max_upload_bytes)
        started = time.perf_counter()
        done = await runner.run(explain, model, photo.data, settings.images.max_pixels, format == "png")
    result = done.explanation
    label = model.labels[result.class_index]
    if done.png is not None:
        return Response(
            done.png,
            media_type="image/png",
            headers={
                "X-Explained-Class": quote(label.scientific_name),
                "X-Explained-Score": f"{result.score:.4f}",
            },
        )
    height, width = model.input_spec.size
    return Explanation(
        model=model.spec.name,
        class_index=result.class_index,
        scientific_name=label.scientific_name,
        common_name=label.common_name,
        score=result.score,
        patch=result.patch,
        stride=result.stride,
        input_size=(height, width),
        grid=result.grid.round(5).tolist(),
        image=image_info(photo, done.image),
        timings_ms=Timings(
            fetch_ms=photo.fetch_ms,
            decode_ms=done.decode_ms,
            infer_ms=done.occlusion_ms,
            total_ms=(time.perf_counter() - started) * 1000 + (photo.fetch_ms or 0.0),
        ),
    )
