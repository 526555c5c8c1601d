"""What every notebook here starts with: where the models and the Leeds photos are, a scratch
folder, a manifest of its own (so training a head never edits yours), and ``app(...)`` to run
``python -m app`` the way you would in a terminal.

Environment: MODELS_DIR (default ../volumes/models, after ``make models``; falls back to
../../shared/models), SPECIES_SHARED_DIR (default ../../shared), NOTEBOOK_WORK (default ./work).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPECIES_SHARED_DIR", REPO.parent / "shared"))
LEEDS = SHARED / "datasets" / "leedsbutterfly"
WORK = Path(os.environ.get("NOTEBOOK_WORK", REPO / "notebooks" / "work"))
WORK.mkdir(parents=True, exist_ok=True)


def _models_dir() -> Path:
    for candidate in (os.environ.get("MODELS_DIR"), REPO / "volumes" / "models", SHARED / "models"):
        if candidate and (Path(candidate) / "aiy_insects_v1" / "model.tflite").is_file():
            return Path(candidate)
    raise FileNotFoundError("no aiy_insects_v1 model: run `make models` (or set MODELS_DIR)")


MODELS = _models_dir()
MANIFEST = WORK / "models.toml"
MANIFEST.write_text(
    f"""# Written by notebooks/leeds.py: the insects classifier and its features, for these notebooks.
[[models]]
name = "aiy_insects_v1"
task = "classifier"
format = "tflite"
group = "insect"
file = {json.dumps(str(MODELS / "aiy_insects_v1" / "model.tflite"))}
labels = {json.dumps(str(MODELS / "aiy_insects_v1" / "labelmap.csv"))}
common_names = {json.dumps(str(MODELS / "aiy_insects_v1" / "inat_insect_labels.txt"))}
background_index = 1021

[[models]]
name = "aiy_insects_features"
task = "embedder"
format = "tflite"
file = {json.dumps(str(MODELS / "aiy_insects_v1" / "model.tflite"))}
output_key = "module/AvgPool/AvgPool"
output = "features"
"""
)

# The Leeds descriptions use older names than the iNaturalist 2017 label maps for two species.
SYNONYMS = {
    "Heliconius charitonius": "Heliconius charithonia",
    "Papilio cresphontes": "Heraclides cresphontes",
}


def leeds_csv(path: Path, keep: Callable[[int], bool] = lambda i: True) -> Path:
    """The Leeds photos as ``path,label`` (the photo number ``i`` within its species, from 0,
    chooses which: e.g. ``keep=lambda i: i % 3 != 0``)."""
    names = {}
    for description in sorted((LEEDS / "descriptions").glob("*.txt")):
        name = description.read_text(errors="replace").splitlines()[0].strip()
        names[description.stem] = SYNONYMS.get(name, name)
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for image in sorted((LEEDS / "images").glob("*.jpg")):
            species, number = image.stem.split("_")
            if keep(int(number) - 1):
                writer.writerow([image, names[species]])
    return path


def app(*args: str) -> str:
    """``python -m app ARGS`` with this folder's manifest; prints and returns what it said."""
    env = {**os.environ, "MODELS_MANIFEST": str(MANIFEST)}
    done = subprocess.run(
        [sys.executable, "-m", "app", *args], cwd=REPO, env=env, capture_output=True, text=True, check=False
    )
    print(done.stdout)
    if done.returncode:
        raise RuntimeError(f"python -m app {' '.join(args)} failed:\n{done.stderr[-3000:]}")
    return done.stdout
