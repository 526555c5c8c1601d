"""`python -m app models`: load the manifest, print each model's state as JSON (what GET /v1/models
lists), exit 1 when not one model is ready."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.cli.runner import ok, refused, run_cli
from tests.support.manifests import write_manifest

THREE_LABELS = {"task": "classifier", "format": "tflite", "labels": "three.txt"}


def unusable_entries(folder: Path) -> list[dict[str, object]]:
    """A model whose file is absent and one whose file is not a model."""
    (folder / "three.txt").write_text("a\nb\nc\n")
    (folder / "broken.tflite").write_bytes(b"this is not a flatbuffer" * 100)
    return [
        {"name": "ghost_v1", "file": "ghost/model.tflite", **THREE_LABELS},
        {"name": "broken_v1", "file": "broken.tflite", **THREE_LABELS},
    ]


def states(stdout: str) -> dict[str, dict[str, Any]]:
    rows = json.loads(stdout)
    assert isinstance(rows, list)
    return {row["name"]: row for row in rows}


@pytest.mark.shared
def test_real_models_are_ready_and_a_ghost_is_missing(tmp_path, real_manifest):
    text = real_manifest.read_text()
    manifest = tmp_path / "models.toml"
    manifest.write_text(
        text + '\n[[models]]\nname = "ghost_v1"\ntask = "classifier"\nformat = "tflite"\n'
        'file = "ghost/model.tflite"\nlabels = "three.txt"\n'
    )
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    rows = states(ok(run_cli("models", manifest=manifest)).stdout)
    assert list(rows) == ["aiy_insects_v1", "aiy_birds_v1", "aiy_insects_features", "ghost_v1"]
    for name in ("aiy_insects_v1", "aiy_birds_v1", "aiy_insects_features"):
        assert rows[name]["state"] == "ready" and rows[name]["reason"] is None, rows[name]
    birds = rows["aiy_birds_v1"]
    assert birds["num_classes"] == 965 and birds["background_index"] == 964
    assert birds["endpoint"] == "/bird_url" and birds["input_size"] == [224, 224]
    assert rows["aiy_insects_features"]["output_dim"] == 1280
    assert rows["aiy_insects_features"]["endpoint"] is None
    ghost = rows["ghost_v1"]
    assert ghost["state"] == "missing" and str(tmp_path / "ghost" / "model.tflite") in ghost["reason"]


def test_exit_1_when_no_model_is_ready(tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", unusable_entries(tmp_path))
    result = run_cli("models", manifest=manifest)
    assert result.returncode == 1, result.stdout + result.stderr
    rows = states(result.stdout)  # the states are still printed, to say why
    assert rows["ghost_v1"]["state"] == "missing", rows["ghost_v1"]
    assert str(tmp_path / "ghost" / "model.tflite") in rows["ghost_v1"]["reason"]
    broken = rows["broken_v1"]
    assert broken["state"] not in ("ready", "missing") and broken["reason"], broken


def test_an_unreadable_manifest_is_refused_with_the_reason(tmp_path):
    manifest = tmp_path / "models.toml"
    manifest.write_text("[[models]\nname = ")
    unreadable = refused(run_cli("models", manifest=manifest))
    assert unreadable.startswith("error: model manifest") and "unreadable" in unreadable, unreadable
    missing = refused(run_cli("models", manifest=tmp_path / "absent.toml"))
    assert "absent.toml" in missing, missing
