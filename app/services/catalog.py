"""What the manifest declares and the state each model is in (GET /v1/models, ``models``, and
the Open Inference Protocol's /v2/models/NAME)."""

from __future__ import annotations

from dataclasses import dataclass

from app.errors import ModelNotFound
from app.models.registry import LoadedModel, ModelState, Registry


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


# --- the Open Inference Protocol's view of a model (GET /v2/models/NAME) ---------------------
# Platform names follow the protocol's "<project>_<format>"; it lists tensorflow_savedmodel,
# and names no TFLite or numpy platform, so those two follow its pattern.
PLATFORMS: dict[str, str] = {
    "tflite": "tensorflow_tflite",
    "saved_model": "tensorflow_savedmodel",
    "head": "numpy_head",  # a trained head (.npz arrays) on its embedder's features
}
DATATYPES: dict[str, str] = {"uint8": "UINT8", "float32": "FP32"}  # the protocol's tensor data types


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    datatype: str
    shape: tuple[int, ...]  # -1: a variable size (the batch; a width not known until loaded)


@dataclass(frozen=True, slots=True)
class ModelMetadata:
    name: str
    versions: tuple[str, ...]
    platform: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]


def find_model(registry: Registry, name: str, version: str | None = None) -> LoadedModel:
    """The entry serving ``name`` in whatever state; ``ModelNotFound`` for a name the manifest
    lacks or a version other than the one it serves (one version per name)."""
    model = registry.get_any(name)
    if model is None:
        raise ModelNotFound(
            f"no model named {name!r}", detail={"available": sorted(m.name for m in registry.entries())}
        )
    if version is not None and version != model.spec.version:
        raise ModelNotFound(
            f"model {name!r} has no version {version!r}; it serves version {model.spec.version!r}",
            detail={"versions": [model.spec.version]},
        )
    return model


def is_serving(model: LoadedModel) -> bool:
    """Ready for inference: what every photo endpoint requires (``Registry.get_ready``)."""
    return model.state == "ready"


def not_serving_reason(model: LoadedModel) -> str:
    return f"model {model.spec.name} is {model.state}: {model.reason or 'still loading'}"


def metadata_of(model: LoadedModel) -> ModelMetadata:
    """What a request to the model carries and gets back, as the service runs it: RGB pixels
    at the input size in the input dtype; FP32 probabilities (softmax applied to logits, uint8
    outputs dequantised) or features. Widths not known before loading are -1."""
    spec, size = model.spec, model.input_spec.size
    image = TensorSpec("image", DATATYPES[model.input_spec.dtype], (-1, size[0], size[1], 3))
    width = model.output_dim or (len(model.labels) if spec.task == "classifier" else 0) or -1
    output = "probabilities" if spec.task == "classifier" else "features"
    return ModelMetadata(
        name=spec.name,
        versions=(spec.version,),
        platform=PLATFORMS[spec.format],
        inputs=(image,),
        outputs=(TensorSpec(output, "FP32", (-1, width)),),
    )
