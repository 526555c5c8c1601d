"""What the manifest declares and the state each model is in; reloading it while serving."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.deps import AdminDep, RegistryDep, SettingsDep
from app.api.presenters import model_info
from app.api.schemas import ModelList, ModelReload, error_responses
from app.services.catalog import status_of
from app.services.reload import reload_models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get("", response_model=ModelList, summary="Every model in the manifest, with its state")
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[model_info(status_of(model)) for model in registry.entries()])


@router.post(
    "/reload",
    response_model=ModelReload,
    responses=error_responses(401, 403, 409),
    dependencies=[AdminDep],
    summary="Re-read the manifest: load new or changed models (a trained head), keep the rest serving",
    description=(
        "Needs `Authorization: Bearer <SECURITY_ADMIN_TOKEN>`. Entries whose manifest entry or file changed "
        "are loaded aside and swapped in at once; requests in flight finish on what they started "
        "with. A changed entry whose new version fails to load (a corrupt file) is refused, with the "
        "reason, and the version loaded before keeps serving. A broken manifest is refused (409) and "
        "the models already loaded keep serving."
    ),
)
async def reload(registry: RegistryDep, settings: SettingsDep) -> ModelReload:
    reloaded = await reload_models(registry, settings.models)
    return ModelReload(
        reloaded=reloaded.loaded,
        refused=reloaded.refused,
        models=[model_info(status_of(m)) for m in registry.entries()],
    )
