"""services.catalog: what GET /v1/models and ``models`` say about each manifest entry: where to
send photos, and the state a model is in and why."""

from __future__ import annotations

import pytest

from app.models.manifest import load_manifest
from app.models.registry import Registry, open_registry
from app.services.catalog import endpoint_of, status_of
from app.settings import AdmissionSettings, ModelSettings
from tests.services.helpers import toy_entry
from tests.support.manifests import write_manifest


@pytest.fixture(scope="module")
def catalog(tmp_path_factory, toy_model):
    model_dir, labels = toy_model
    root = tmp_path_factory.mktemp("catalog")
    entries = [
        toy_entry(model_dir, labels),  # ungrouped, loads
        toy_entry(model_dir, labels, name="ghost_birds_v1", file=str(root / "ghost"), group="bird"),
        {
            "name": "ghost_features",
            "task": "embedder",
            "format": "tflite",
            "file": "ghost.tflite",
            "output": "features",
        },
        toy_entry(model_dir, labels, name="tampered_v1", sha256="0" * 64),
    ]
    manifest = write_manifest(root / "models.toml", entries)
    registry = open_registry(ModelSettings(manifest=manifest), AdmissionSettings(inference_workers=1))
    yield registry, manifest
    registry.close()


def by_name(registry: Registry) -> dict:
    return {model.name: status_of(model) for model in registry.entries()}


def test_endpoints_follow_task_and_group(catalog):
    statuses = by_name(catalog[0])
    assert statuses["toy_v1"].endpoint == "/v1/classify/toy_v1"
    assert statuses["ghost_birds_v1"].endpoint == "/bird_url"  # the legacy route of its group
    assert statuses["ghost_birds_v1"].group == "bird"
    assert statuses["ghost_features"].endpoint is None  # an embedder takes no photos itself
    assert [m.name for m in catalog[0].entries()] == list(statuses)  # manifest order


def test_a_ready_model_reports_its_shape(catalog):
    ready = by_name(catalog[0])["toy_v1"]
    assert (ready.state, ready.reason) == ("ready", None)
    assert (ready.task, ready.format, ready.version) == ("classifier", "saved_model", "1")
    assert (ready.num_classes, ready.output_dim, ready.background_index) == (5, 5, 4)
    assert ready.input_size == (224, 224)
    assert ready.load_seconds is not None and ready.load_seconds > 0
    assert ready.sha256 is None and ready.embedder is None


def test_missing_and_failed_models_say_why(catalog):
    registry, manifest = catalog
    statuses = by_name(registry)
    ghost = statuses["ghost_birds_v1"]
    assert ghost.state == "missing"
    assert (
        ghost.reason is not None
        and "ghost not found" in ghost.reason
        and "download_volume.sh" in ghost.reason
    )
    assert ghost.num_classes is None and ghost.output_dim is None and ghost.load_seconds is None
    features = statuses["ghost_features"]
    assert features.state == "missing" and str(manifest.parent / "ghost.tflite") in (features.reason or "")

    tampered = statuses["tampered_v1"]
    assert tampered.state == "failed" and "sha256 mismatch" in (tampered.reason or "")
    assert tampered.sha256 == "0" * 64  # what the manifest declares
    assert tampered.output_dim is None


def test_before_loading_every_entry_is_pending(catalog):
    _, manifest = catalog
    fresh = Registry(load_manifest(manifest))
    statuses = by_name(fresh)
    assert {s.state for s in statuses.values()} == {"pending"}
    assert all(s.reason is None and s.load_seconds is None for s in statuses.values())
    assert (
        statuses["toy_v1"].input_size == (224, 224) and statuses["toy_v1"].endpoint == "/v1/classify/toy_v1"
    )


@pytest.mark.shared
def test_the_real_models(real_registry):
    birds = status_of(real_registry.get_ready("aiy_birds_v1"))
    assert (birds.endpoint, birds.state, birds.group, birds.version) == ("/bird_url", "ready", "bird", "3")
    assert (birds.num_classes, birds.output_dim, birds.background_index) == (965, 965, 964)
    insects = status_of(real_registry.get_ready("aiy_insects_v1"))
    assert (insects.endpoint, insects.num_classes) == ("/insect_url", 1022)
    features = real_registry.get_ready("aiy_insects_features")
    status = status_of(features)
    assert endpoint_of(features) is None and status.task == "embedder"
    assert (status.num_classes, status.output_dim, status.input_size) == (None, 1280, (224, 224))
