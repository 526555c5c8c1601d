"""The model manifest: one TOML entry per model, so adding a model is data, not code.

Two files, merged: the shipped ``volumes/models/models.toml`` (tracked) and the user's own
``local.toml`` beside it (never tracked), where ``train-head`` registers the models a user
trains. Each holds ``[[models]]`` tables; an entry's relative paths resolve against its own
file's folder, so a volume can be mounted anywhere. A name (or route group) in both files is an
error, not an override: a user cannot silently replace a shipped model.
"""

from __future__ import annotations

import itertools
import json
import tomllib
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from app.core.types import InputSpec

Task = Literal["classifier", "embedder"]
Format = Literal["tflite", "saved_model", "head"]

__all__ = [
    "InputSpec",
    "Manifest",
    "ManifestError",
    "ModelSpec",
    "add_entry",
    "check_entry",
    "load_manifest",
    "load_manifests",
    "set_entry_field",
]


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
    # NCBI taxonomy per label, shipped (`python -m app build-taxonomy` writes it, offline): what
    # the labels are classified by where `taxonomy` is missing or lacks the label.
    offline_taxonomy: str | None = None
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
    # The manifest file the entry was read from (as configured): relative paths resolve against
    # its folder, and GET /v1/models names it.
    _manifest_file: Path | None = PrivateAttr(default=None)

    @property
    def manifest_file(self) -> Path | None:
        return self._manifest_file

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

    def resolve(self, relative: str, spec: ModelSpec | None = None) -> Path:
        """``relative`` against the folder of ``spec``'s own manifest file (the shipped
        manifest's folder when no spec is given or it was built in code)."""
        path = Path(relative).expanduser()
        if path.is_absolute():
            return path
        origin = spec.manifest_file if spec is not None else None
        return (origin.resolve().parent if origin is not None else self.base_dir) / path


class ManifestError(Exception):
    """The manifest is missing or malformed: the server cannot know what to serve."""


def _read(path: Path) -> list[ModelSpec]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ManifestError(f"model manifest {path} not found") from exc
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ManifestError(f"model manifest {path} unreadable: {exc}") from exc
    return _specs(path, raw.get("models", []))


def _specs(path: Path, tables: object) -> list[ModelSpec]:
    if not isinstance(tables, list):
        raise ManifestError(f"model manifest {path} invalid: 'models' must be [[models]] tables")
    specs: list[ModelSpec] = []
    for table in tables:
        try:
            spec = ModelSpec.model_validate(table)
        except ValidationError as exc:
            raise ManifestError(f"model manifest {path} invalid: {exc}") from exc
        spec._manifest_file = path
        specs.append(spec)
    return specs


def _merge(shipped: Path, specs: list[ModelSpec]) -> Manifest:
    for attr in ("name", "group"):
        first: dict[str, ModelSpec] = {}
        for spec in specs:
            value = getattr(spec, attr)
            if value is None:
                continue
            other = first.setdefault(value, spec)
            if other is not spec and other.manifest_file != spec.manifest_file:
                raise ManifestError(
                    f"model {attr} {value!r} is declared in both {other.manifest_file} and "
                    f"{spec.manifest_file}: rename the entry in {spec.manifest_file}"
                )
    try:
        return Manifest(base_dir=shipped.resolve().parent, models=specs)
    except ValidationError as exc:
        files = sorted({str(spec.manifest_file) for spec in specs} | {str(shipped)})
        raise ManifestError(f"model manifest {' + '.join(files)} invalid: {exc}") from exc


def load_manifest(path: Path) -> Manifest:
    """One manifest file on its own."""
    return _merge(path, _read(path))


def load_manifests(shipped: Path, user: Path | None) -> Manifest:
    """The shipped manifest (required) merged with the user's (optional: absent = none)."""
    specs = _read(shipped)
    if user is not None and user.exists():
        specs += _read(user)
    return _merge(shipped, specs)


def _entry_specs(user: Path, shipped: Path | None, text: str | None = None) -> list[ModelSpec]:
    """What the merged manifest holds with ``user`` read as ``text`` (default: as on disk)."""
    specs = _read(shipped) if shipped is not None and shipped.resolve() != user.resolve() else []
    if text is not None:
        try:
            specs += _specs(user, tomllib.loads(text).get("models", []))
        except tomllib.TOMLDecodeError as exc:
            raise ManifestError(f"{user} would not be valid TOML: {exc}") from exc
    elif user.exists():
        specs += _read(user)
    return specs


def check_entry(path: Path, entry: dict[str, str], shipped: Path | None = None) -> bool:
    """Whether ``entry`` is new to the user manifest ``path`` (merged with ``shipped``): False
    when an identical entry is already there; ManifestError when the name is taken by another
    entry, in either file (ask before producing the files it points at)."""
    same = next((spec for spec in _entry_specs(path, shipped) if spec.name == entry["name"]), None)
    if same is None:
        return True
    if same.manifest_file == path and all(str(getattr(same, key)) == value for key, value in entry.items()):
        return False
    raise ManifestError(
        f"{same.manifest_file} already has a model named {entry['name']!r}: choose another name"
    )


def add_entry(path: Path, entry: dict[str, str], shipped: Path | None = None) -> bool:
    """Append ``entry`` as a ``[[models]]`` table to the user manifest ``path``, keeping the
    file as written (comments and all). False when an identical entry is already there;
    ManifestError when the name is taken in either file. The merged result is validated before
    it is written."""
    if not check_entry(path, entry, shipped):
        return False
    text = path.read_text(encoding="utf-8") if path.exists() else _USER_HEADER
    # JSON strings are valid TOML basic strings.
    block = "\n[[models]]\n" + "".join(f"{key} = {json.dumps(value)}\n" for key, value in entry.items())
    _write(path, shipped, text + ("" if text.endswith("\n") or not text else "\n") + block)
    return True


def set_entry_field(path: Path, name: str, key: str, value: str, shipped: Path | None = None) -> None:
    """Add ``key = value`` to the ``[[models]]`` table named ``name`` in ``path`` (the user
    manifest, machine-written as ``add_entry`` writes it); ManifestError when the entry is not
    there, already sets the key, or the result would not be valid."""
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True) if path.exists() else []
    starts = [i for i, line in enumerate(lines) if line.strip() == "[[models]]"] + [len(lines)]
    for begin, end in itertools.pairwise(starts):
        block = "".join(lines[begin:end])
        try:
            table = tomllib.loads(block.replace("[[models]]", "", 1))
        except tomllib.TOMLDecodeError:
            continue
        if table.get("name") != name:
            continue
        if key in table:
            raise ManifestError(f"{path}: model {name!r} already sets {key}")
        while end > begin and not lines[end - 1].strip():
            end -= 1  # after the table's last line, before the blank lines that separate it
        if not lines[end - 1].endswith("\n"):
            lines[end - 1] += "\n"
        lines.insert(end, f"{key} = {json.dumps(value)}\n")
        _write(path, shipped, "".join(lines))
        return
    raise ManifestError(f"{path} has no model named {name!r}")


_USER_HEADER = """\
# The user's own models, merged with the shipped models.toml beside it (never tracked by git).
# `python -m app train-head` adds its entries here; a name already in models.toml is refused.
"""


def _write(path: Path, shipped: Path | None, text: str) -> None:
    try:
        _merge(shipped or path, _entry_specs(path, shipped, text))
    except ManifestError as exc:
        raise ManifestError(f"the change would make {path} invalid: {exc}") from exc
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)
