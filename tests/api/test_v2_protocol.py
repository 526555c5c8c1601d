"""The Open Inference Protocol (KServe v2) read-only surface on a real server.

The expected shapes are written here from the specification (kserve/open-inference-protocol,
specification/protocol/inference_rest.md and open_inference_rest.yaml), independently of the
service's own schemas, as strict pydantic models: no field missing, none extra, no coercion.
The session server has a ready SavedModel, a model missing on disk (ghost_v1) and one that
fails to load (broken_v1), plus the AIY models where ../shared is present.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from tests.support.env import service_env
from tests.support.manifests import write_manifest
from tests.support.server import ServiceProcess

DATATYPES = {"BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64",
             "FP16", "FP32", "FP64", "BYTES"}  # fmt: skip  # the spec's "Tensor Data Types"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class LiveServer(_Spec):  # $live_server_response
    live: bool


class ReadyServer(_Spec):  # $ready_server_response ("ready": the gRPC message and KServe)
    ready: bool


class MetadataServer(_Spec):  # $metadata_server_response
    name: str
    version: str
    extensions: list[str]


class MetadataTensor(_Spec):  # $metadata_tensor
    name: str
    datatype: str
    shape: list[int]


class MetadataModel(_Spec):  # $metadata_model_response ("versions" is optional; sent here)
    name: str
    versions: list[str]
    platform: str
    inputs: list[MetadataTensor]
    outputs: list[MetadataTensor]


class ReadyModel(_Spec):  # $ready_model_response
    name: str
    ready: bool


class ErrorObject(_Spec):  # $metadata_model_error_response and the other error objects
    error: str


class NotReadyModel(ReadyModel):  # a 503: both a $ready_model_response and an error object
    error: str


def _check(response: httpx.Response, status: int, shape: type[_Spec]) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    return shape.model_validate(response.json())


def _tensor(tensor: MetadataTensor) -> tuple[str, str, list[int]]:
    return tensor.name, tensor.datatype, tensor.shape


def test_server_live_ready_and_metadata(client):
    assert _check(client.get("/v2/health/live"), 200, LiveServer).live is True
    assert _check(client.get("/v2/health/ready"), 200, ReadyServer).ready is True
    meta = _check(client.get("/v2"), 200, MetadataServer)
    assert meta.name == "species-id" and meta.version == client.get("/openapi.json").json()["info"]["version"]
    assert meta.extensions == []


def test_model_metadata_of_a_ready_savedmodel(client):
    meta = _check(client.get("/v2/models/test_plants_savedmodel"), 200, MetadataModel)
    assert meta.name == "test_plants_savedmodel" and meta.versions == ["test"]
    assert meta.platform == "tensorflow_savedmodel"
    assert [_tensor(t) for t in meta.inputs] == [("image", "FP32", [-1, 224, 224, 3])]
    assert [_tensor(t) for t in meta.outputs] == [("probabilities", "FP32", [-1, 2102])]
    versioned = _check(client.get("/v2/models/test_plants_savedmodel/versions/test"), 200, MetadataModel)
    assert versioned == meta


@pytest.mark.shared
def test_model_metadata_of_the_aiy_tflite_models(client):
    for name, classes in (("aiy_birds_v1", 965), ("aiy_insects_v1", 1022)):
        meta = _check(client.get(f"/v2/models/{name}"), 200, MetadataModel)
        assert meta.platform == "tensorflow_tflite" and meta.versions == ["3"]
        assert [_tensor(t) for t in meta.inputs] == [("image", "UINT8", [-1, 224, 224, 3])]
        assert [_tensor(t) for t in meta.outputs] == [("probabilities", "FP32", [-1, classes])]
        assert _check(client.get(f"/v2/models/{name}/versions/3/ready"), 200, ReadyModel).ready is True


def test_every_tensor_uses_the_spec_datatypes_and_variable_batch(client):
    for name in [m["name"] for m in client.get("/v1/models").json()["models"]]:
        meta = _check(client.get(f"/v2/models/{name}"), 200, MetadataModel)
        for tensor in [*meta.inputs, *meta.outputs]:
            assert tensor.datatype in DATATYPES and tensor.shape[0] == -1, (name, tensor)
            assert all(d == -1 or d > 0 for d in tensor.shape), (name, tensor)


def test_model_ready_200_for_a_serving_model_503_for_missing_or_failed(client):
    ready = _check(client.get("/v2/models/test_plants_savedmodel/ready"), 200, ReadyModel)
    assert ready == ReadyModel(name="test_plants_savedmodel", ready=True)
    assert _check(client.get("/v2/models/test_plants_savedmodel/versions/test/ready"), 200, ReadyModel).ready
    for name, state in (("ghost_v1", "missing"), ("broken_v1", "failed"), ("tampered_v1", "failed")):
        answer = _check(client.get(f"/v2/models/{name}/ready"), 503, NotReadyModel)
        assert answer.name == name and answer.ready is False and f"is {state}" in answer.error
        assert "retry-after" not in client.get(f"/v2/models/{name}/ready").headers  # not coming back
    # A missing model still has metadata (from its manifest entry; the width unknown until loaded).
    ghost = _check(client.get("/v2/models/ghost_v1"), 200, MetadataModel)
    assert ghost.outputs[0].shape == [-1, -1] and ghost.inputs[0].datatype == "UINT8"


def test_unknown_model_or_version_is_404_with_the_protocol_error_object(client):
    for path in (
        "/v2/models/no_such_model",
        "/v2/models/no_such_model/ready",
        "/v2/models/no_such_model/versions/1",
        "/v2/models/test_plants_savedmodel/versions/2",
        "/v2/models/test_plants_savedmodel/versions/2/ready",
    ):
        error = _check(client.get(path), 404, ErrorObject).error
        assert "no_such_model" in error or "no version '2'" in error, (path, error)


def test_openapi_documents_the_v2_routes(client):
    paths = client.get("/openapi.json").json()["paths"]
    for route in ("/v2", "/v2/health/live", "/v2/health/ready", "/v2/models/{model_name}",
                  "/v2/models/{model_name}/ready", "/v2/models/{model_name}/versions/{model_version}",
                  "/v2/models/{model_name}/versions/{model_version}/ready"):  # fmt: skip
        assert "get" in paths[route], route
    assert "503" in paths["/v2/models/{model_name}/ready"]["get"]["responses"]


@pytest.fixture(scope="module")
def nothing_serves(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[ServiceProcess]:
    """Only a model missing on disk, and API keys on: never ready, and v2 stays open."""
    folder = tmp_path_factory.mktemp("v2-missing")
    (folder / "labels.txt").write_text("a\nb\n")
    entry = {"name": "ghost_v1", "task": "classifier", "format": "tflite", "version": "7",
             "file": "ghost/model.tflite", "labels": str(folder / "labels.txt")}  # fmt: skip
    env = service_env(write_manifest(folder / "models.toml", [entry]), API_KEYS='["v2-key-3f1a"]')
    proc = ServiceProcess(env, artifacts / "v2-missing-service.log")
    proc.env.pop("REQUIRE_ALL_MODELS", None)  # unset means unset, whatever this shell has
    proc.spawn()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        try:
            if httpx.get(f"{proc.base_url}/health/ready", timeout=2).json()["status"] == "not_ready":
                break
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    else:
        proc.stop()
        pytest.fail(f"the server never finished loading:\n{proc.log()}")
    yield proc
    proc.stop()


def test_a_server_with_no_usable_model_is_live_but_not_ready(nothing_serves):
    with httpx.Client(base_url=nothing_serves.base_url, timeout=10) as client:
        assert _check(client.get("/v2/health/live"), 200, LiveServer).live is True
        assert _check(client.get("/v2/health/ready"), 503, ReadyServer).ready is False
        assert client.get("/health/ready").status_code == 503  # the same readiness
        answer = _check(client.get("/v2/models/ghost_v1/versions/7/ready"), 503, NotReadyModel)
        assert answer.ready is False and "missing" in answer.error
        assert _check(client.get("/v2/models/ghost_v1"), 200, MetadataModel).versions == ["7"]
        # Open without a key, like /health/* and /v1/models; the photo endpoints are not.
        assert _check(client.get("/v2"), 200, MetadataServer).name == "species-id"
        assert client.post("/v1/classify/ghost_v1", files={"image": ("a.jpg", b"x")}).status_code == 401
