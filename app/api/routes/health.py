"""Liveness is trivial; readiness depends on the models (503 until they are loaded)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from app.api.deps import IndexStoreDep, MetricsDep, RegistryDep, SettingsDep
from app.api.schemas import Liveness, Readiness
from app.index.store import IndexStore
from app.services.index_hint import absent_note

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Liveness, summary="The process answers")
async def live() -> Liveness:
    return Liveness()


@router.get(
    "/ready",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "models still loading, or none usable"}},
    summary="200 once the models are loaded (see MODELS_REQUIRE_ALL)",
)
async def ready(registry: RegistryDep, settings: SettingsDep, index: IndexStoreDep) -> JSONResponse:
    states = {entry.spec.name: entry.state for entry in registry.entries()}
    if registry.loading_done:
        # Built or replaced since, or still being loaded by the start-up thread (whose refresh
        # holds the store's lock): what is there now, never the state from before the load.
        await asyncio.to_thread(index.refresh)
    note = _index_note(index)
    if registry.is_ready(require_all=settings.models.require_all):
        body = Readiness(status="ready", models=states, index=index.state, index_note=note)
    elif not registry.loading_done:
        body = Readiness(status="loading", models=states, index=index.state, index_note=note)
    else:
        body = Readiness(status="not_ready", models=states, index=index.state, index_note=note)
    return JSONResponse(body.model_dump(), status_code=200 if body.status == "ready" else 503)


def _index_note(index: IndexStore) -> str | None:
    """Never a failure: the classifiers serve without an index. Absent: how to build one."""
    if index.state == "absent":
        return absent_note(index.dir.root)
    return index.reason if index.state == "refused" else None


metrics_router = APIRouter(tags=["health"])


@metrics_router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}},
    summary="Prometheus metrics: requests, latency, fetch/decode/inference time, batch sizes, queue depth",
)
async def metrics(collected: MetricsDep) -> Response:
    return Response(generate_latest(collected.registry), media_type=CONTENT_TYPE_LATEST)
