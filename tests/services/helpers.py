"""What the service tests share besides fixtures: photos of nothing, an observer that records,
the toy model's manifest entry, a classifier built by hand for ``interpret``, Leeds folders."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from app.core import Label
from app.enrich.taxonomies import TaxonomyBook
from app.models.loaded import LoadedModel
from app.models.manifest import ModelSpec
from app.models.runner import InferenceRunner
from app.services.identify import Identifier
from app.settings import ImageSettings, RankingSettings

MAX_PIXELS = ImageSettings().max_pixels
TOY_CLASSES = ["Vanessa cardui", "Vanessa atalanta", "Danaus plexippus", "Pieris rapae", "background"]
TOY_BACKGROUND = 4
LEFT_OUT = ("Vanessa cardui", "Pieris rapae")  # Leeds species not in the built index: added later


def png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def grey_png(size: int = 300) -> bytes:
    return png(Image.new("RGB", (size, size), (128, 128, 128)))


def noise_png(size: int = 300, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    return png(Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8), "RGB"))


class Recorder:
    """An InferenceObserver that remembers what it was told."""

    def __init__(self) -> None:
        self.inferences: list[tuple[str, float, float]] = []
        self.shared: list[tuple[float, dict[str, float]]] = []
        self.fetches: list[tuple[float, int]] = []

    def observe_inference(self, model: str, decode_ms: float, infer_ms: float) -> None:
        self.inferences.append((model, decode_ms, infer_ms))

    def observe_shared(self, decode_ms: float, infer_ms: dict[str, float]) -> None:
        self.shared.append((decode_ms, infer_ms))

    def observe_fetch(self, fetch_ms: float, size: int) -> None:
        self.fetches.append((fetch_ms, size))


def make_identifier(
    runner: InferenceRunner, ranking: RankingSettings | None = None, **kwargs: Any
) -> Identifier:
    return Identifier(runner, TaxonomyBook(), ranking or RankingSettings(), max_pixels=MAX_PIXELS, **kwargs)


def toy_entry(model: Path, labels: Path, name: str = "toy_v1", **overrides: Any) -> dict[str, Any]:
    """The manifest entry of the toy SavedModel (fixture ``toy_model``)."""
    return {
        "name": name,
        "task": "classifier",
        "format": "saved_model",
        "version": "1",
        "file": str(model),
        "labels": str(labels),
        "background_index": TOY_BACKGROUND,
        "input": {"size": [224, 224], "dtype": "float32", "range": [0.0, 1.0]},
        **overrides,
    }


def crafted_model(taxonomy: Path | None = None) -> LoadedModel:
    """A classifier with just what ``interpret`` reads (the spec's background, the labels, the
    taxonomy path) and no weights: probabilities are handed to it."""
    spec = ModelSpec(
        name="crafted_v1",
        task="classifier",
        format="tflite",
        file="crafted.tflite",
        labels="crafted.csv",
        background_index=TOY_BACKGROUND,
    )
    labels = [Label(scientific_name=name) for name in TOY_CLASSES]
    return LoadedModel(spec, state="ready", labels=labels, taxonomy_path=taxonomy)


def probabilities(*values: float) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


def species_folders(root: Path, photos: list[tuple[Path, str]]) -> Path:
    """``root/Genus_species/photo.jpg`` symlinks: the layout build-index and train-head read."""
    for image, name in photos:
        folder = root / name.replace(" ", "_")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / image.name).symlink_to(image)
    return root


def photos_in(folder: Path, species: set[str] | None = None) -> list[tuple[Path, str]]:
    found = []
    for species_dir in sorted(p for p in folder.iterdir() if p.is_dir()):
        name = species_dir.name.replace("_", " ")
        if species is None or name in species:
            found += [(p, name) for p in sorted(species_dir.iterdir())]
    return found
