"""The Open Inference Protocol's (KServe v2) JSON objects, for its read-only endpoints.

Field for field as the specification gives them: kserve/open-inference-protocol,
specification/protocol/inference_rest.md ("Payload Contents") and open_inference_rest.yaml
(components/schemas), the same objects as kserve/kserve docs/predict-api/v2/required_api.md.
A field the protocol marks optional is still always sent here.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ServerLiveResponse(BaseModel):
    """$live_server_response."""

    live: bool


class ServerReadyResponse(BaseModel):
    """$ready_server_response (the Markdown spec misprints its field as "live"; the gRPC
    ServerReadyResponse and KServe's own server say "ready")."""

    ready: bool


class ServerMetadataResponse(BaseModel):
    """$metadata_server_response."""

    name: str = Field(description="a descriptive name for the server")
    version: str = Field(description="the server version")
    extensions: list[str] = Field(description="the protocol extensions supported: none")


class MetadataTensor(BaseModel):
    """$metadata_tensor."""

    name: str
    datatype: str = Field(description="a protocol tensor data type: UINT8, FP32, ...")
    shape: list[int] = Field(description="-1: a variable-size dimension (the batch)")


class ModelMetadataResponse(BaseModel):
    """$metadata_model_response."""

    name: str
    versions: list[str] = Field(description="the versions that may be requested: the one served")
    platform: str = Field(
        description='"<project>_<format>": tensorflow_tflite, tensorflow_savedmodel, numpy_head'
    )
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ModelReadyResponse(BaseModel):
    """$ready_model_response."""

    name: str
    ready: bool


class ModelNotReadyResponse(ModelReadyResponse):
    """A 503: both a $ready_model_response (ready false) and an error object, so a client reading
    either finds its answer."""

    error: str = Field(description="why the model does not serve: missing, failed, still loading")


class ErrorResponse(BaseModel):
    """$metadata_model_error_response, $metadata_server_error_response: every error here."""

    error: str = Field(description="the descriptive message for the error")


def protocol_errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries so /docs shows the protocol's error shape for each status."""
    return {status: {"model": ErrorResponse} for status in statuses}
