"""The Open Inference Protocol (KServe v2) read-only surface: health, server and model metadata.

Spec: https://github.com/kserve/open-inference-protocol/blob/main/specification/protocol/inference_rest.md
(and its OpenAPI, open_inference_rest.yaml; the older text is kserve/kserve
docs/predict-api/v2/required_api.md). Inference stays on /v1 and the legacy routes: no
``/infer`` here, so ``extensions`` is empty.

Status codes. The original text makes the health answer's status the boolean ("a 200 status
code indicates true and a 4xx status code indicates false"); the current one gives the bodies
({"live"}, {"ready"}, {"name", "ready"}). KServe's reference server (kserve/kserve,
python/kserve/kserve/protocol/rest/v2_endpoints.py and errors.py) answers a model that is not
ready with 503 and ``{"error"}``, an unknown one with 404 and ``{"error"}``. Here: 200 when
ready, 503 when not (any status >= 400 fails a Kubernetes probe, and 503 is what /health/ready
says), with the body the spec gives (plus "error" on a model's 503); every error is
``{"error": "..."}``, the protocol's error object. Open, like /health/* and /v1/models.

Readiness is the registry's: the server's is /health/ready's ``Registry.is_ready`` (with
MODELS_REQUIRE_ALL), a model's is what every photo endpoint requires (``state == "ready"``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute

from app import __version__
from app.api.deps import RegistryDep, SettingsDep
from app.api.v2_schemas import (
    MetadataTensor,
    ModelMetadataResponse,
    ModelNotReadyResponse,
    ModelReadyResponse,
    ServerLiveResponse,
    ServerMetadataResponse,
    ServerReadyResponse,
    protocol_errors,
)
from app.errors import ServiceError
from app.models.registry import LoadedModel
from app.services.catalog import (
    ModelMetadata,
    TensorSpec,
    find_model,
    is_serving,
    metadata_of,
    not_serving_reason,
)

SERVER_NAME = "species-id"


class _ProtocolRoute(APIRoute):
    """Every error of these routes in the protocol's shape, ``{"error": "..."}``, with the
    service's status and headers (the rest of the service answers ``{"error": {"code", ...}}``)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except ServiceError as exc:
                headers = exc.headers or None
                return JSONResponse({"error": exc.message}, status_code=exc.status, headers=headers)

        return route


router = APIRouter(prefix="/v2", tags=["open inference protocol (v2)"], route_class=_ProtocolRoute)

_MODEL_ERRORS = protocol_errors(404)
_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_MODEL_ERRORS,
    503: {"model": ModelNotReadyResponse, "description": "missing on disk, failed to load, or loading"},
}


@router.get("", response_model=ServerMetadataResponse, summary="Server metadata")
async def server_metadata() -> ServerMetadataResponse:
    return ServerMetadataResponse(name=SERVER_NAME, version=__version__, extensions=[])


@router.get("/health/live", response_model=ServerLiveResponse, summary="Server live (livenessProbe)")
async def server_live() -> ServerLiveResponse:
    return ServerLiveResponse(live=True)


@router.get(
    "/health/ready",
    response_model=ServerReadyResponse,
    responses={503: {"model": ServerReadyResponse, "description": "models loading, or none usable"}},
    summary="Server ready (readinessProbe): as /health/ready, with MODELS_REQUIRE_ALL",
)
async def server_ready(registry: RegistryDep, settings: SettingsDep) -> JSONResponse:
    ready = registry.is_ready(require_all=settings.models.require_all)
    return JSONResponse(ServerReadyResponse(ready=ready).model_dump(), status_code=200 if ready else 503)


@router.get(
    "/models/{model_name}",
    response_model=ModelMetadataResponse,
    responses=_MODEL_ERRORS,
    summary="Model metadata: platform, input and output tensors",
)
async def model_metadata(model_name: str, registry: RegistryDep) -> ModelMetadataResponse:
    return _metadata(metadata_of(find_model(registry, model_name)))


@router.get(
    "/models/{model_name}/versions/{model_version}",
    response_model=ModelMetadataResponse,
    responses=_MODEL_ERRORS,
    summary="Model metadata, of that version",
)
async def model_version_metadata(
    model_name: str, model_version: str, registry: RegistryDep
) -> ModelMetadataResponse:
    return _metadata(metadata_of(find_model(registry, model_name, model_version)))


@router.get(
    "/models/{model_name}/ready",
    response_model=ModelReadyResponse,
    responses=_READY_RESPONSES,
    summary="Model ready: 200 when it serves, else 503",
)
async def model_ready(model_name: str, registry: RegistryDep) -> JSONResponse:
    return _readiness(find_model(registry, model_name))


@router.get(
    "/models/{model_name}/versions/{model_version}/ready",
    response_model=ModelReadyResponse,
    responses=_READY_RESPONSES,
    summary="Model ready, of that version",
)
async def model_version_ready(model_name: str, model_version: str, registry: RegistryDep) -> JSONResponse:
    return _readiness(find_model(registry, model_name, model_version))


def _metadata(meta: ModelMetadata) -> ModelMetadataResponse:
    return ModelMetadataResponse(
        name=meta.name, versions=list(meta.versions), platform=meta.platform,
        inputs=_tensors(meta.inputs), outputs=_tensors(meta.outputs),
    )  # fmt: skip


def _tensors(specs: tuple[TensorSpec, ...]) -> list[MetadataTensor]:
    return [MetadataTensor(name=t.name, datatype=t.datatype, shape=list(t.shape)) for t in specs]


def _readiness(model: LoadedModel) -> JSONResponse:
    if is_serving(model):
        return JSONResponse(ModelReadyResponse(name=model.name, ready=True).model_dump())
    body = ModelNotReadyResponse(name=model.name, ready=False, error=not_serving_reason(model))
    headers = {"Retry-After": "5"} if model.state in ("pending", "loading") else None
    return JSONResponse(body.model_dump(), status_code=503, headers=headers)
