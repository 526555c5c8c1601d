"""What the manifest declares and the state each model is in (GET /v1/models, ``models``)."""

from __future__ import annotations

from dataclasses import dataclass

from app.models.registry import LoadedModel, ModelState


@dataclass(frozen=True, slots=True)
class ModelStatus:
    name: str
    task: str
    format: str
    embedder: str | None
    version: str
    description: str
    group: str | None
    endpoint: str | None  # where to send photos for this model
    state: ModelState
    reason: str | None
    num_classes: int | None
    output_dim: int | None
    input_size: tuple[int, int]
    background_index: int | None
    sha256: str | None
    load_seconds: float | None
    manifest: str | None  # the file the entry was read from, as configured
    refused: str | None  # why the last reload refused a new version (this one keeps serving)


def endpoint_of(model: LoadedModel) -> str | None:
    spec = model.spec
    if spec.task != "classifier":
        return None
    return f"/{spec.group}_url" if spec.group else f"/v1/classify/{spec.name}"


def status_of(model: LoadedModel) -> ModelStatus:
    spec = model.spec
    return ModelStatus(
        name=spec.name,
        task=spec.task,
        format=spec.format,
        embedder=spec.embedder,
        version=spec.version,
        description=spec.description,
        group=spec.group,
        endpoint=endpoint_of(model),
        state=model.state,
        reason=model.reason,
        num_classes=len(model.labels) or None,
        output_dim=model.output_dim,
        input_size=model.input_spec.size,
        background_index=spec.background_index,
        sha256=spec.sha256,
        load_seconds=model.load_seconds,
        manifest=str(spec.manifest_file) if spec.manifest_file is not None else None,
        refused=model.refused[2] if model.refused is not None else None,
    )
