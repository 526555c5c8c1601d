"""Liveness is trivial; readiness depends on the models (503 until they are loaded)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import IndexStoreDep, MetricsDep, RegistryDep, SettingsDep
from app.api.schemas import Liveness, Readiness

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Liveness, summary="The process answers")
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "models still loading, or none usable"}},
    summary="200 once the models are loaded (see REQUIRE_ALL_MODELS)",
)
async def ready(registry: RegistryDep, settings: SettingsDep, index: IndexStoreDep) -> JSONResponse:
    states = {entry.spec.name: entry.state for entry in registry.entries()}
    if registry.is_ready(require_all=settings.models.require_all):
        body, status = Readiness(status="ready", models=states, index=index.state), 200
    elif not registry.loading_done:
        body, status = Readiness(status="loading", models=states, index=index.state), 503
    else:
        body, status = Readiness(status="not_ready", models=states, index=index.state), 503
    return JSONResponse(body.model_dump(), status_code=status)


metrics_router = APIRouter(tags=["health"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics: requests, latency, fetch/decode/inference time, batch sizes, queue depth",
)
async def metrics(collected: MetricsDep) -> Response:
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
