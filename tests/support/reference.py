"""In-process references: what the models say when called directly, without the service."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

# The Leeds descriptions use older names than the iNaturalist 2017 label maps for two species.
LEEDS_SYNONYMS = {
    "Heliconius charitonius": "Heliconius charithonia",
    "Papilio cresphontes": "Heraclides cresphontes",
}


@dataclass(frozen=True)
class Sample:
    path: Path
    group: str
    scientific_name: str
    common_name: str


def samples(shared: Path) -> list[Sample]:
    with (shared / "samples" / "labels.csv").open(newline="") as fh:
        return [
            Sample(shared / "samples" / row["file"], row["group"], row["scientific_name"], row["common_name"])
            for row in csv.DictReader(fh)
        ]


def leeds(shared: Path) -> list[tuple[Path, str]]:
    root = shared / "datasets" / "leedsbutterfly"
    names = {}
    for description in sorted((root / "descriptions").glob("*.txt")):
        name = description.read_text(errors="replace").splitlines()[0].strip()
        names[description.stem] = LEEDS_SYNONYMS.get(name, name)
    return [(image, names[image.name.split("_")[0]]) for image in sorted((root / "images").glob("*.jpg"))]


def reference_pixels(image: Image.Image | Path, size: int = 224) -> np.ndarray:
    """The preprocessing the models' publishers describe: plain RGB, bilinear resize, uint8."""
    if isinstance(image, Path):
        image = Image.open(image)
    return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR), np.uint8)


def savedmodel_probabilities(model_dir: Path, image: Image.Image) -> np.ndarray:
    """A test-built classifier SavedModel called directly: float32 pixels in [0, 1]."""
    import tensorflow as tf

    pixels = reference_pixels(image).astype(np.float32) / 255.0
    module = tf.saved_model.load(str(model_dir))
    out = module.signatures["serving_default"](images=tf.constant(pixels[np.newaxis]))
    return np.asarray(out["probabilities"].numpy()[0])


class TFLiteReference:
    """The model as its publisher describes it: plain RGB resize to 224 (bilinear), uint8 in,
    q/256 out."""

    def __init__(self, model: Path) -> None:
        from ai_edge_litert.interpreter import Interpreter

        self._interpreter = Interpreter(model_path=str(model), num_threads=1)
        self._interpreter.allocate_tensors()
        self._input = self._interpreter.get_input_details()[0]["index"]
        self._output = self._interpreter.get_output_details()[0]["index"]

    def probabilities(self, image: Path) -> np.ndarray:
        self._interpreter.set_tensor(self._input, reference_pixels(image)[np.newaxis])
        self._interpreter.invoke()
        return self._interpreter.get_tensor(self._output)[0].astype(np.float32) / 256.0
