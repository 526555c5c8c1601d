"""What the service tests (tests/services, tests/identification) share besides fixtures: the toy
model's manifest entry, a classifier built by hand for crafted probabilities, an Identifier and
the classifier endpoints' question to it, Leeds folders."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from app.core import Label
from app.enrich.taxonomies import TaxonomyBook
from app.identification.answer import Answer
from app.identification.plan import Plan, plan_for
from app.identification.request import Place, Request, Steering
from app.identification.service import Identifier
from app.identification.steer import steer_now
from app.imaging.photo import Photo
from app.models.loaded import LoadedModel
from app.models.manifest import Manifest, ModelSpec
from app.models.registry import Registry
from app.models.runner import InferenceRunner
from app.models.scope import ModelScope
from app.settings import ImageSettings, RankingSettings

MAX_PIXELS = ImageSettings().max_pixels
TOY_CLASSES = ["Vanessa cardui", "Vanessa atalanta", "Danaus plexippus", "Pieris rapae", "background"]
TOY_BACKGROUND = 4
LEFT_OUT = ("Vanessa cardui", "Pieris rapae")  # Leeds species not in the built index: added later


def make_identifier(
    runner: InferenceRunner,
    ranking: RankingSettings | None = None,
    registry: Registry | None = None,
    **kwargs: Any,
) -> Identifier:
    """``registry``: the models a request may name (none: answers from given probabilities and
    ``identify_files`` only)."""
    registry = registry or Registry(Manifest(base_dir=Path.cwd(), models=[]))
    return Identifier(
        registry, runner, TaxonomyBook(), ranking or RankingSettings(), max_pixels=MAX_PIXELS, **kwargs
    )


def classify(
    identifier: Identifier,
    model: str,
    photo: Photo,
    top_k: int | None = None,
    *,
    steering: Steering | None = None,
    place: Place | None = None,
) -> Answer:
    """What a classifier endpoint (/bird_url, /v1/classify/MODEL) asks: one photo, one named
    model, the model's own probabilities, no species index."""
    steering = steering or Steering()
    request = Request([photo], place, steering, top_k, model=model, scores="model", with_index=False)
    return asyncio.run(identifier.identify(request, identifier.plan(model=model, steering=steering)))


def interpret(
    identifier: Identifier,
    model: LoadedModel,
    probabilities: npt.NDArray[np.float32],
    top_k: int | None = None,
    *,
    features: npt.NDArray[np.float32] | None = None,
    plan: Plan | None = None,
) -> Answer:
    """One output of ``model`` answered as a classifier endpoint answers its photo (the model's
    own probabilities, no place): ``identify_files``' steps for one photo, on given numbers."""
    plan = plan or plan_for([model], identifier.taxonomies, Steering(), identifier.ranking)
    assert model.scope is not None
    assessed = {model.name: model.scope.assess(probabilities, features, calibrated=False)}
    verdicts, chosen, why = identifier.judge([assessed], plan, "model")
    steered = steer_now(chosen.probabilities, model, plan)
    return identifier.conclude(verdicts, chosen, why, plan, "model", top_k, steered, steered.geo)


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


def crafted_model(
    taxonomy: Path | None = None, *, classes: list[str] = TOY_CLASSES, background: int | None = TOY_BACKGROUND
) -> LoadedModel:
    """A classifier with just what an answer reads (the spec's background, the labels, the
    taxonomy path, an uncalibrated scope) and no weights: probabilities are handed to it."""
    spec = ModelSpec(
        name="crafted_v1",
        task="classifier",
        format="tflite",
        file="crafted.tflite",
        labels="crafted.csv",
        background_index=background,
    )
    labels = [Label(scientific_name=name) for name in classes]
    scope = ModelScope(None, None, background_index=background)
    return LoadedModel(spec, state="ready", labels=labels, taxonomy_path=taxonomy, scope=scope)


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
