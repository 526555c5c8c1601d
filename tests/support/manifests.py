"""Model manifests the tests write: TOML from dicts, and the entries for the real and test-built
models."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.support.shared import MODELS


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_manifest(path: Path, entries: list[dict[str, Any]]) -> Path:
    blocks = ["[[models]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in e.items()) for e in entries]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def aiy_entry(name: str, group: str, background: int, common: str) -> dict[str, Any]:
    folder = MODELS / name
    return {
        "name": name,
        "task": "classifier",
        "format": "tflite",
        "version": "3",
        "group": group,
        "file": str(folder / "model.tflite"),
        "labels": str(folder / "labelmap.csv"),
        "common_names": str(folder / common),
        "background_index": background,
        "input": {"size": [224, 224], "dtype": "uint8", "range": [0, 255]},
    }


def insects_features_entry(**overrides: Any) -> dict[str, Any]:
    """The real embedder: the insects model's 1280-d pre-logits tensor."""
    return {
        "name": "aiy_insects_features",
        "task": "embedder",
        "format": "tflite",
        "version": "3",
        "file": str(MODELS / "aiy_insects_v1" / "model.tflite"),
        "output_key": "module/AvgPool/AvgPool",
        "input": {"size": [224, 224], "dtype": "uint8", "range": [0, 255]},
        "output": "features",
        **overrides,
    }


def embedder_entry(model: Path, name: str = "test_embedder") -> dict[str, Any]:
    """A test-built SavedModel with the iNat InceptionV3's contract (299x299 float32 in [0, 1])."""
    return {
        "name": name,
        "task": "embedder",
        "format": "saved_model",
        "version": "test",
        "file": str(model),
        "output_key": "feature_vector",
        "input": {"size": [299, 299], "dtype": "float32", "range": [0.0, 1.0]},
        "output": "features",
    }


def plants_entry(model: Path, labels: tuple[Path, Path | None]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "test_plants_savedmodel",
        "task": "classifier",
        "format": "saved_model",
        "version": "test",
        "group": "plant",
        "file": str(model),
        "labels": str(labels[0]),
        "background_index": 2101,
        "input": {"size": [224, 224], "dtype": "float32", "range": [0.0, 1.0]},
    }
    if labels[1] is not None:
        entry["common_names"] = str(labels[1])
    return entry


BIRDS = ("aiy_birds_v1", "bird", 964, "inat_bird_labels.txt")
INSECTS = ("aiy_insects_v1", "insect", 1021, "inat_insect_labels.txt")


SHIPPED_MANIFEST = Path(__file__).resolve().parents[2] / "volumes" / "models" / "models.toml"


def with_scope(entry: dict[str, Any], *, calibration: Path | str | None = "shipped") -> dict[str, Any]:
    """``entry`` (an AIY classifier) plus what volumes/models/models.toml declares for
    /v1/identify: the pre-logits and final-layer weights (the class-cosine scope signal) and, by
    default, the shipped calibration file (``None``: uncalibrated)."""
    from app.models.manifest import load_manifest

    spec = next(m for m in load_manifest(SHIPPED_MANIFEST).models if m.name == entry["name"])
    scoped = entry | {
        "features_tensor": spec.features_tensor,
        "class_weights_tensor": spec.class_weights_tensor,
    }
    if calibration == "shipped":
        assert spec.calibration is not None
        scoped["calibration"] = str(SHIPPED_MANIFEST.parent / spec.calibration)
    elif calibration is not None:
        scoped["calibration"] = str(calibration)
    return scoped
