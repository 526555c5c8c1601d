"""What the manifest declares and the state each model is in."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header

from app.api.access import require_admin
from app.api.schemas import ModelInfo, ModelList, ModelReload, error_responses
from app.deps import RegistryDep, SettingsDep
from app.errors import ManifestInvalid
from app.models.manifest import ManifestError, load_manifest
from app.models.registry import LoadedModel

router = APIRouter(prefix="/v1/models", tags=["models"])


def _endpoint(entry: LoadedModel) -> str | None:
    spec = entry.spec
    if spec.task != "classifier":
        return None
    return f"/{spec.group}_url" if spec.group else f"/v1/classify/{spec.name}"


def model_info(entry: LoadedModel) -> ModelInfo:
    spec = entry.spec
    return ModelInfo(
        name=spec.name,
        task=spec.task,
        format=spec.format,
        embedder=spec.embedder,
        version=spec.version,
        description=spec.description,
        group=spec.group,
        endpoint=_endpoint(entry),
        state=entry.state,
        reason=entry.reason,
        num_classes=len(entry.labels) or None,
        output_dim=entry.num_outputs,
        input_size=entry.input_spec.size,
        background_index=spec.background_index,
        sha256=spec.sha256,
        load_seconds=entry.load_seconds,
    )


@router.get("", response_model=ModelList, summary="Every model in the manifest, with its state")
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[model_info(entry) for entry in registry.entries()])


@router.post(
    "/reload",
    response_model=ModelReload,
    responses=error_responses(401, 403, 409),
    summary="Re-read the manifest: load new or changed models (a trained head), keep the rest serving",
    description=(
        "Needs `Authorization: Bearer <ADMIN_TOKEN>`. Entries whose manifest entry or file changed "
        "are loaded aside and swapped in at once; requests in flight finish on what they started "
        "with. A broken manifest is refused (409) and the models already loaded keep serving."
    ),
)
async def reload_models(
    registry: RegistryDep,
    settings: SettingsDep,
    authorization: Annotated[str | None, Header()] = None,
) -> ModelReload:
    require_admin(settings, authorization, "POST /v1/models/reload")
    try:
        manifest = await asyncio.to_thread(load_manifest, settings.models_manifest)
    except ManifestError as exc:
        raise ManifestInvalid(str(exc)) from exc
    reloaded = await asyncio.to_thread(registry.reload, manifest)
    return ModelReload(reloaded=reloaded, models=[model_info(entry) for entry in registry.entries()])
