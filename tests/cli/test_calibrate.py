"""`python -m app calibrate`: a classifier's temperature and scope threshold from labelled photos
of its group, written as plain JSON that the server then loads."""

from __future__ import annotations

import json

import pytest

from app.models.scope import load_calibration
from tests.cli.runner import ok, refused, run_cli
from tests.support.datasets import photos as labelled_photos
from tests.support.datasets import write_csv
from tests.support.manifests import INSECTS, aiy_entry, insects_features_entry, with_scope, write_manifest
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("calibrate")
    manifest = write_manifest(
        root / "models.toml",
        [with_scope(aiy_entry(*INSECTS), calibration=None), insects_features_entry()],
    )
    leeds = [p for p in labelled_photos(SHARED, with_skimage=False) if p.source == "leeds"]
    return root, manifest, leeds


def test_calibrate_writes_what_the_server_loads_and_names_the_manifest_line(setup):
    root, manifest, leeds = setup
    dataset = write_csv(leeds[::5], root / "leeds.csv")  # 60 photos, every species
    result = ok(run_cli("calibrate", dataset, "--model aiy_insects_v1 --no-progress", manifest=manifest))
    written = root / "calibration" / "aiy_insects_v1.json"  # beside the manifest by default
    body = json.loads(written.read_text())
    assert body["model"] == "aiy_insects_v1" and body["scope_signal"] == "class_cosine"
    assert body["photos"] == 60 and body["photos_in_model"] == 60
    assert 0.3 < body["temperature"] < 0.8  # the AIY models are under-confident: T < 1
    assert body["figures"]["ece_after"] < body["figures"]["ece_before"]
    assert f"scope class_cosine >= {body['scope_threshold']:.3f}" in result.stdout
    assert 'add  calibration = "calibration/aiy_insects_v1.json"' in result.stdout  # not declared yet
    loaded = load_calibration(written, body["sha256"])
    assert loaded is not None and loaded.scope_threshold == body["scope_threshold"]


def test_calibrate_refuses_too_few_photos_and_a_non_classifier(setup):
    root, manifest, leeds = setup
    few = write_csv(leeds[:9], root / "few.csv")
    assert "a calibration needs at least 10" in refused(
        run_cli("calibrate", few, "--model aiy_insects_v1 --no-progress", manifest=manifest)
    )
    some = write_csv(leeds[:12], root / "some.csv")
    assert "aiy_insects_features" in refused(
        run_cli("calibrate", some, "--model aiy_insects_features --no-progress", manifest=manifest)
    )
    assert not (root / "calibration" / "aiy_insects_features.json").exists()
