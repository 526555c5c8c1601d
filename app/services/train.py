"""train-head: YOUR classes as a head on frozen embeddings, saved with its labels, a validation
report and (optionally) an entry in the user manifest; served after a reload. Needs the
``training`` extra."""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from app.imaging.augment import AUGMENTATIONS
from app.index.embedding import Embedded, embed_paths
from app.index.publishing import identity_of
from app.index.species_folders import LabelledImage
from app.models.manifest import add_entry
from app.models.registry import LoadedModel
from app.training.evaluate import EvaluationReport, evaluate, write_report
from app.training.heads import TrainedHead, save_head, train_head
from app.training.predictions import Predictions, ranked_from_probabilities


@dataclass(frozen=True)
class TrainRequest:
    images: list[LabelledImage]
    dataset: str  # where the photos came from, for the report and the head's sidecar
    name: str  # the new model's manifest name
    target: Path  # the head's folder
    kind: Literal["logistic", "dense"] = "logistic"
    val_fraction: float = 0.2
    augment: list[str] = field(default_factory=list)
    hidden: int = 256
    seed: int = 0


@dataclass(frozen=True)
class TrainOutcome:
    head: Path  # head.npz
    trained: TrainedHead
    report: EvaluationReport  # on the validation split
    skipped: list[tuple[Path, str]]  # photos that could not be embedded


def check_augmentations(names: list[str]) -> None:
    unknown = sorted(set(names) - set(AUGMENTATIONS))
    if unknown:
        raise ValueError(f"unknown augmentation {unknown}: choose from {sorted(AUGMENTATIONS)}")


def train(
    request: TrainRequest, embedder: LoadedModel, *, max_pixels: int, workers: int, progress: bool
) -> TrainOutcome:
    """Embed (resumable chunks under TARGET/.work), split keeping every species on both sides,
    fit, save, and evaluate the validation split through the exported arrays. ValueError when
    the photos cannot make a head (too few per species, unknown augmentation)."""
    check_augmentations(request.augment)
    if len({image.scientific_name for image in request.images}) < 2:
        raise ValueError("a head needs photos of at least 2 species")
    images, work = request.images, request.target / ".work"
    paths = [image.path for image in images]

    def embed(augmented: str | None = None) -> Embedded:
        return embed_paths(
            embedder,
            paths,
            workers=workers,
            max_pixels=max_pixels,
            work_dir=work,
            progress=progress,
            augment=augmented,
        )

    embedded = embed()
    kept = [i for i, ok in enumerate(embedded.ok) if ok]
    labels = [images[i].scientific_name for i in kept]
    extra = [embed(a).features[kept] for a in request.augment]
    trained = train_head(
        embedded.features[kept],
        labels,
        kind=request.kind,
        val_fraction=request.val_fraction,
        seed=request.seed,
        hidden=request.hidden,
        augmented=extra,
    )
    head = save_head(
        trained,
        request.target,
        embedder=identity_of(embedder),
        dataset=request.dataset,
        augment=request.augment,
        common_names={image.scientific_name: image.common_name for image in images},
    )
    shutil.rmtree(work, ignore_errors=True)
    predictions = Predictions(
        source=f"head {request.name} ({trained.kind} on {embedder.name}), validation split",
        classes=trained.classes,
        paths=[images[kept[i]].path for i in trained.val_rows],
        ranked=list(
            ranked_from_probabilities(
                trained.val_probabilities, trained.classes, background_index=None, top_k=5
            )
        ),
    )
    report = evaluate(predictions, [labels[i] for i in trained.val_rows], dataset=request.dataset)
    write_report(report, predictions, request.target / "report")
    return TrainOutcome(head, trained, report, embedded.failures)


def register(user_manifest: Path, entry: dict[str, str], shipped: Path | None = None) -> bool:
    """Adds the head's entry to the user manifest (never the shipped one; validated merged with
    ``shipped`` first; comments kept). False when the same entry is already there;
    ManifestError when the name is taken in either file."""
    return add_entry(user_manifest, entry, shipped)


def entry_for(user_manifest: Path, request: TrainRequest, embedder: str) -> dict[str, str]:
    """The manifest entry the head will have: known before training, so a taken name is refused
    (``check_entry``) before the files of the head registered under it are overwritten."""
    base = user_manifest.resolve().parent

    def shown(path: Path) -> str:
        # The manifest resolves relative paths against its own folder, so name the file as
        # written (a relative --out-dir is the working directory's) from there.
        written = path.resolve()
        return str(written.relative_to(base) if written.is_relative_to(base) else written)

    return {
        "name": request.name,
        "task": "classifier",
        "format": "head",
        "embedder": embedder,
        "file": shown(request.target / "head.npz"),
        "labels": shown(request.target / "labels.csv"),
        "output": "logits",
        "description": f"{request.kind} head on {embedder}, trained on {request.dataset}",
    }
