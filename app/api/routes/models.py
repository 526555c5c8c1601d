"""What the manifest declares and the state each model is in."""

from __future__ import annotations

from fastapi import APIRouter

from app.api.schemas import ModelInfo, ModelList
from app.deps import RegistryDep
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
        version=spec.version,
        description=spec.description,
        group=spec.group,
        endpoint=_endpoint(entry),
        state=entry.state,
        reason=entry.reason,
        num_classes=len(entry.labels) or None,
        output_dim=entry.num_outputs,
        input_size=spec.input.size,
        background_index=spec.background_index,
        sha256=spec.sha256,
        load_seconds=entry.load_seconds,
    )


@router.get("", response_model=ModelList, summary="Every model in the manifest, with its state")
async def list_models(registry: RegistryDep) -> ModelList:
    return ModelList(models=[model_info(entry) for entry in registry.entries()])
