"""The model manifest: one TOML entry per model, so adding a model is data, not code.

``volumes/models/models.toml`` holds ``[[models]]`` tables; relative paths resolve against the
manifest's own folder, so a volume can be mounted anywhere.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.types import InputSpec

Task = Literal["classifier", "embedder"]
Format = Literal["tflite", "saved_model", "head"]

__all__ = ["InputSpec", "Manifest", "ManifestError", "ModelSpec", "add_entry", "load_manifest"]


class ModelSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")
    task: Task
    format: Format
    version: str = "1"
    description: str = ""
    # Legacy route group: "bird" serves POST /bird_url.
    group: str | None = Field(default=None, pattern=r"^[a-z]+$")
    file: str | None = None  # a .tflite file, a SavedModel folder or a head's .npz, relative to the manifest
    # A head (``python -m app train-head``) classifies the features of this embedder; it takes
    # the embedder's input, so its own ``input`` is ignored.
    embedder: str | None = None
    handle: str | None = None  # a TF-Hub handle, resolved through TFHUB_CACHE_DIR
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-f]{64}$")
    labels: str | None = None  # csv (id,name[,common_name]) or txt, one class per line
    common_names: str | None = None  # txt, "Scientific name (Common Name)" per line
    taxonomy: str | None = None  # GBIF taxonomy per label, written by `python -m app link-gbif`
    background_index: int | None = Field(default=None, ge=0)
    input: InputSpec = InputSpec()
    output: Literal["probabilities", "logits", "features"] = "probabilities"
    # SavedModel: signature and output key; TFLite: name of an intermediate tensor to read.
    signature: str = "serving_default"
    output_key: str | None = None
    # TFLite classifiers: the pre-logit features read from the same invoke, and the final layer's
    # weights; together they give the open-set signal (app.models.scope) /v1/identify uses.
    features_tensor: str | None = None
    class_weights_tensor: str | None = None
    # What `python -m app calibrate` fitted for this model (temperature, scope threshold).
    calibration: str | None = None
    source: str = ""  # where download_volume.sh gets the official file

    @model_validator(mode="after")
    def _check(self) -> ModelSpec:
        if (self.file is None) == (self.handle is None):
            raise ValueError(f"model {self.name}: give exactly one of 'file' or 'handle'")
        if self.handle is not None and self.format != "saved_model":
            raise ValueError(f"model {self.name}: a TF-Hub handle needs format 'saved_model'")
        if (self.format == "head") != (self.embedder is not None):
            raise ValueError(f"model {self.name}: format 'head' and 'embedder' go together")
        if self.format == "head" and self.task != "classifier":
            raise ValueError(f"head {self.name} must be a classifier")
        if self.task == "classifier":
            if self.labels is None:
                raise ValueError(f"classifier {self.name} needs a 'labels' file")
            if self.output == "features":
                raise ValueError(f"classifier {self.name} must output probabilities or logits")
        elif self.output != "features":
            raise ValueError(f"embedder {self.name} must declare output = 'features'")
        return self


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    base_dir: Path
    models: list[ModelSpec] = []

    @model_validator(mode="after")
    def _unique(self) -> Manifest:
        for attr in ("name", "group"):
            seen: set[str] = set()
            for spec in self.models:
                value = getattr(spec, attr)
                if value is None:
                    continue
                if value in seen:
                    raise ValueError(f"two models share {attr} {value!r}")
                seen.add(value)
        return self

    @model_validator(mode="after")
    def _embedders(self) -> Manifest:
        tasks = {spec.name: spec.task for spec in self.models}
        for spec in self.models:
            if spec.embedder is not None and tasks.get(spec.embedder) != "embedder":
                raise ValueError(f"head {spec.name}: no embedder named {spec.embedder!r} in the manifest")
        return self

    def resolve(self, relative: str) -> Path:
        path = Path(relative).expanduser()
        return path if path.is_absolute() else self.base_dir / path


class ManifestError(Exception):
    """The manifest is missing or malformed: the server cannot know what to serve."""


def load_manifest(path: Path) -> Manifest:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"model manifest {path} not found") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"model manifest {path} unreadable: {exc}") from exc
    try:
        return Manifest(base_dir=path.resolve().parent, models=raw.get("models", []))
    except ValidationError as exc:
        raise ManifestError(f"model manifest {path} invalid: {exc}") from exc


def check_entry(path: Path, entry: dict[str, str]) -> bool:
    """Whether ``entry`` is new: False when an identical entry is already there; ManifestError
    when the name is taken by another entry (ask before producing the files it points at)."""
    current = load_manifest(path).models if path.exists() else []
    same = next((spec for spec in current if spec.name == entry["name"]), None)
    if same is None:
        return True
    if all(str(getattr(same, key)) == value for key, value in entry.items()):
        return False
    raise ManifestError(f"{path} already has a model named {entry['name']!r}: choose another name")


def add_entry(path: Path, entry: dict[str, str]) -> bool:
    """Append ``entry`` as a ``[[models]]`` table, keeping the file as written (comments and
    all). False when an identical entry is already there; ManifestError when the name is taken
    by another entry. The result is validated before it is written."""
    if not check_entry(path, entry):
        return False
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    # JSON strings are valid TOML basic strings.
    block = "\n[[models]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())
    updated = text + ("" if text.endswith("\n") or not text else "\n") + block
    try:
        Manifest(base_dir=path.resolve().parent, models=tomllib.loads(updated).get("models", []))
    except (tomllib.TOMLDecodeError, ValidationError) as exc:
        raise ManifestError(f"the new entry would make {path} invalid: {exc}") from exc
    partial = path.with_name(path.name + ".partial")
    partial.write_text(updated, encoding="utf-8")
    partial.replace(path)
    return True
