"""train-head and embedding-map: YOUR classes on frozen embeddings, and a picture of them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.app import cli
from app.cli.common import Dataset, Progress, Workers, fail, labelled, open_model, require_extra, settings

if TYPE_CHECKING:
    from app.services.train import TrainOutcome, TrainRequest


@cli.command("train-head")
def train_head(
    dataset: Dataset,
    embedder: Annotated[str, typer.Option(help="the embedder whose frozen features the head learns from")],
    name: Annotated[str, typer.Option(help="the new model's name: served at /v1/classify/NAME")],
    kind: Annotated[str, typer.Option(help="logistic (default) or dense (one hidden layer)")] = "logistic",
    val_fraction: Annotated[float, typer.Option(min=0.05, max=0.5)] = 0.2,
    augment: Annotated[
        list[str] | None, typer.Option(help="flip and/or crop copies of training photos")
    ] = None,
    hidden: Annotated[int, typer.Option(min=8, max=4096, help="dense head: hidden units")] = 256,
    seed: Annotated[int, typer.Option()] = 0,
    out_dir: Annotated[Path | None, typer.Option(help="default: NAME/ beside the manifests")] = None,
    register: Annotated[
        bool, typer.Option(help="add the entry to the user manifest (local.toml beside MODELS_MANIFEST)")
    ] = True,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Teach the service YOUR classes: a head on frozen embeddings (transfer learning), saved with
    its labels, an entry in the user manifest and a validation report; served after a reload."""
    if kind not in ("logistic", "dense"):
        raise fail("--kind is logistic or dense")
    require_extra("sklearn", "training", "train-head")
    from app.models.manifest import ManifestError, check_entry
    from app.services import train as service

    config = settings()
    manifest, shipped = config.models.user_manifest, config.models.manifest
    request = service.TrainRequest(
        images=labelled(dataset), dataset=str(dataset), name=name,
        target=out_dir or manifest.resolve().parent / name, kind="dense" if kind == "dense" else "logistic",
        val_fraction=val_fraction, augment=list(augment or []), hidden=hidden, seed=seed,
    )  # fmt: skip
    entry = service.entry_for(manifest, request, embedder)
    try:
        new = not register or check_entry(manifest, entry, shipped)  # a taken name: refused before training
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    with open_model(config, embedder, "embedder") as model:
        try:
            outcome = service.train(
                request, model, max_pixels=config.images.max_pixels,
                workers=workers or config.admission.inference_workers, progress=progress,
            )  # fmt: skip
        except ValueError as exc:
            raise fail(str(exc)) from exc
    _print_outcome(outcome, request, embedder)
    if not register:
        typer.echo(f"saved {outcome.head}; not registered (--no-register)")
        return
    try:
        added = new and service.register(manifest, entry, shipped)
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"{'added to' if added else 'already in'} {manifest}; serve it at /v1/classify/{name} "
        "after POST /v1/models/reload (admin token) or a restart"
    )


def _print_outcome(outcome: TrainOutcome, request: TrainRequest, embedder: str) -> None:
    trained, report = outcome.trained, outcome.report
    for path, error in outcome.skipped:
        typer.echo(f"skipped: {path}: {error}", err=True)
    typer.echo(
        f"{request.name}: {trained.kind} head on {embedder}, {len(trained.classes)} classes, "
        f"{len(trained.train_rows)} training photos (+{trained.n_augmented} augmented), "
        f"{len(trained.val_rows)} validation photos"
    )
    typer.echo(
        f"training accuracy {trained.train_accuracy:.3f}, validation accuracy {trained.val_accuracy:.3f} "
        f"(macro-F1 {report.macro_f1:.3f}); report in {request.target / 'report'}"
    )


@cli.command("embedding-map")
def embedding_map(
    dataset: Dataset,
    embedder: Annotated[str, typer.Option(help="an embedder's manifest name")],
    out: Annotated[Path, typer.Option(help="PNG to write (a JSON of the figures goes beside it)")],
    seed: Annotated[int, typer.Option()] = 0,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """PCA and t-SNE (and UMAP, if installed) of the embeddings coloured by species, with
    k-means purity and NMI against the labels."""
    require_extra("sklearn", "training", "embedding-map")
    import tempfile

    from app.index.embedding import embed_paths
    from app.training.embedding_map import embedding_map as draw

    config = settings()
    images = labelled(dataset)
    with open_model(config, embedder, "embedder") as model, tempfile.TemporaryDirectory() as work:
        embedded = embed_paths(
            model, [image.path for image in images], work_dir=Path(work),
            max_pixels=config.images.max_pixels, workers=workers or config.admission.inference_workers,
            progress=progress,
        )  # fmt: skip
    labels = [image.scientific_name for image, ok in zip(images, embedded.ok, strict=True) if ok]
    try:
        report = draw(
            embedded.features[embedded.ok], labels, out, embedder=embedder, dataset=str(dataset), seed=seed
        )
    except ValueError as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"{report.photos} photos of {report.species} species: k-means (k={report.kmeans_k}) purity "
        f"{report.purity:.3f}, NMI {report.nmi:.3f}; PCA 2-D keeps {report.pca_variance_2d:.1%} "
        f"of the variance; wrote {out} ({', '.join(report.projections)}) and {out.with_suffix('.json')}"
    )
