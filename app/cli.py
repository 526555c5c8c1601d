"""Command line: thin wrappers over the same registry and pipeline the server uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.settings import Settings

if TYPE_CHECKING:
    from app.models.registry import LoadedModel, Registry

cli = typer.Typer(help="Species identification service.", no_args_is_help=True, add_completion=False)

Dataset = Annotated[
    Path, typer.Argument(exists=True, help="one folder per species, or a CSV of path,label[,common_name]")
]


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default: PORT or 8000")] = None,
) -> None:
    """Run the HTTP service (uvicorn, one process; scale with replicas)."""
    import uvicorn

    settings = Settings()
    uvicorn.run(
        "app.main:app",
        host=host or settings.host,
        port=settings.port if port is None else port,
        log_level=settings.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )


@cli.command()
def models() -> None:
    """Load every model in the manifest and print its state as JSON."""
    from app.api.routes.models import model_info
    from app.models.registry import open_registry

    registry = open_registry(Settings())
    rows = [model_info(entry).model_dump() for entry in registry.entries()]
    typer.echo(json.dumps(rows, indent=2))
    registry.close()
    if not any(row["state"] == "ready" for row in rows):
        raise typer.Exit(1)


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _model(settings: Settings, name: str, task: str) -> tuple[Registry, LoadedModel]:
    """Load just ``name`` (and a head's embedder); exit 2 with the reason if it is not usable."""
    from app.errors import ServiceError
    from app.models.registry import open_registry

    registry = open_registry(settings, only=name)
    try:
        return registry, registry.get(name, task=task)
    except ServiceError as exc:
        registry.close()
        raise _fail(exc.message) from exc


def _bar(total: int, what: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="photo", desc=what, disable=not progress)


@cli.command()
def classify(
    photos: Annotated[Path, typer.Argument(exists=True, help="a photo, or a folder of photos (recursive)")],
    model: Annotated[str, typer.Option(help="a classifier's manifest name (a trained head too)")],
    top_k: Annotated[int, typer.Option(min=1, max=100)] = 5,
    out: Annotated[
        Path | None, typer.Option(help="CSV of the top-k per photo (a folder's default: stdout)")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Classify one photo, or every photo in a folder (batched), exactly as the server would.

    A folder gives a CSV (path,rank,scientific_name,score,error); photos that cannot be read are
    listed with their error, not fatal.
    """
    import sys

    from app.errors import ServiceError
    from app.index.species_folders import IMAGE_SUFFIXES
    from app.pipeline import run_model
    from app.ranking import rank
    from app.training.evaluate import write_predictions_csv
    from app.training.predictions import with_model

    settings = Settings()
    registry, entry = _model(settings, model, "classifier")
    try:
        if photos.is_dir():
            paths = sorted(p for p in photos.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not paths:
                raise _fail(f"no photos under {photos}")
            with _bar(len(paths), f"classifying ({model})", progress) as bar:
                n_workers = workers or settings.inference_workers
                predictions = with_model(
                    entry, paths, settings, top_k=top_k, workers=n_workers, on_progress=bar.update
                )
            if out is None:
                write_predictions_csv(predictions, sys.stdout)
            else:
                with out.open("w", newline="", encoding="utf-8") as fh:
                    write_predictions_csv(predictions, fh)
            for path, error in predictions.failures:
                typer.echo(f"unreadable: {path}: {error}", err=True)
            typer.echo(
                f"{len(paths) - len(predictions.failures)} photos classified, {len(predictions.failures)} "
                f"unreadable{f'; wrote {out}' if out else ''}",
                err=True,
            )
            sys.stdout.flush()
            return
        try:
            output = run_model(entry, photos.read_bytes(), settings.max_image_pixels)
        except ServiceError as exc:
            raise _fail(exc.message) from exc
    finally:
        registry.close()
    ranking = rank(
        output.scores, top_k=top_k, background_index=entry.spec.background_index, min_score=settings.min_score
    )
    for index, score in zip(ranking.indices, ranking.scores, strict=True):
        label = entry.labels[index]
        common = f" ({label.common_name})" if label.common_name else ""
        typer.echo(f"{score:.4f}  {label.scientific_name}{common}")
    if ranking.no_match:
        typer.echo(f"no match: {ranking.no_match_reason}")


@cli.command("build-index")
def build_index(
    images_dir: Dataset,
    out: Annotated[Path, typer.Option(help="index folder (INDEX_DIR of the server)")],
    embedder: Annotated[str, typer.Option(help="an embedder's manifest name")],
    dims: Annotated[int, typer.Option(min=2, max=4096, help="PCA dimensions kept")] = 128,
    chunk_size: Annotated[int, typer.Option(min=1, help="photos per resumable chunk")] = 256,
    workers: Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="embedding chunks (default OUT/.work, removed on success)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
    engine: Annotated[
        str, typer.Option(help="local (threads here) or ray (Ray Data: `pip install .[ray]`)")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="a Ray cluster (e.g. ray://head:10001); default: start Ray here")
    ] = None,
    actors: Annotated[
        int | None, typer.Option(min=1, help="ray: embedder actors (default: --workers)")
    ] = None,
) -> None:
    """Embed labelled photos, fit PCA, build a FAISS index and publish it as OUT's current version.

    Re-running after an interruption reuses the chunks already embedded (local engine). With
    --engine ray the embedding runs on Ray Data; PCA and FAISS stay here.
    """
    from app.index.builder import EmbedFn
    from app.index.builder import build_index as build
    from app.index.embedding import Embedded

    if engine not in ("local", "ray"):
        raise _fail("--engine is local or ray")
    settings = Settings()
    registry, model = _model(settings, embedder, "embedder")
    embed: EmbedFn | None = None
    if engine == "ray":
        try:
            from app.index.ray_engine import embed_with_ray
        except ImportError as exc:
            raise _fail("--engine ray needs Ray: pip install '.[ray]'") from exc

        def embed(paths: list[Path]) -> Embedded:
            return embed_with_ray(
                model,
                settings.models_manifest,
                paths,
                max_pixels=settings.max_image_pixels,
                address=ray_address,
                actors=actors or workers or settings.inference_workers,
                progress=progress,
            )

    try:
        report = build(
            images_dir,
            out,
            model,
            dims=dims,
            max_pixels=settings.max_image_pixels,
            chunk_size=chunk_size,
            workers=workers or settings.inference_workers,
            work_dir=work_dir,
            progress=progress,
            embed=embed,
        )
    except (ValueError, FileNotFoundError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        registry.close()
    m = report.manifest
    variance = (
        f", PCA keeps {report.explained_variance:.1%} of the variance" if report.explained_variance else ""
    )
    typer.echo(
        f"published {out}/{m.version}: {m.n_vectors} photos of {m.n_species} species, "
        f"{m.index_type} index of {m.dim}-d vectors{variance}; "
        f"{report.skipped} photos skipped, {report.resumed_chunks} chunks resumed"
    )


@cli.command("add-to-index")
def add_to_index(
    images_dir: Dataset,
    index: Annotated[Path, typer.Option(help="index folder to extend")],
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Add photos (of known or new species) to an index without retraining; a running server
    picks the new version up on its next request."""
    from app.index.artifacts import IndexDir, IndexLoadError
    from app.index.builder import add_folder

    settings = Settings()
    index_dir = IndexDir(index)
    try:
        name = index_dir.load().manifest.embedder.name
    except IndexLoadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    registry, model = _model(settings, name, "embedder")
    try:
        extended, embedded = add_folder(
            images_dir,
            index_dir,
            model,
            max_pixels=settings.max_image_pixels,
            workers=settings.inference_workers,
            progress=progress,
        )
    except (ValueError, FileNotFoundError, IndexLoadError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    finally:
        registry.close()
    m = extended.manifest
    typer.echo(
        f"published {index}/{m.version}: now {m.n_vectors} photos of {m.n_species} species "
        f"({int(embedded.ok.sum())} added, {len(embedded.failures)} skipped)"
    )


@cli.command("link-gbif")
def link_gbif(
    model: Annotated[
        str | None, typer.Option(help="a classifier's manifest name: link its label map")
    ] = None,
    index: Annotated[Path | None, typer.Option(help="an index folder: link its species")] = None,
    out: Annotated[
        Path | None, typer.Option(help="default: the model's `taxonomy` path, or beside its labels")
    ] = None,
    rate: Annotated[float, typer.Option(min=0.1, max=1000, help="GBIF calls started per second")] = 5.0,
    kingdom: Annotated[str | None, typer.Option(help="restrict matches, e.g. Animalia")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Resolve every label against GBIF once, into a taxonomy file the service joins onto results.

    Resumable: labels already in the file are skipped. Only EXACT matches are linked; the rest
    are listed.
    """
    import asyncio

    from app.enrich.gbif import GbifClient
    from app.enrich.link import link_names
    from app.index.store import TAXONOMY_FILE

    settings = Settings()
    if (model is None) == (index is None):
        typer.echo("error: give exactly one of --model or --index", err=True)
        raise typer.Exit(2)
    if model is not None:
        from app.models.labels import load_labels
        from app.models.manifest import load_manifest

        manifest = load_manifest(settings.models_manifest)
        spec = next((m for m in manifest.models if m.name == model and m.labels), None)
        if spec is None or spec.labels is None:
            typer.echo(f"error: no model with a label map named {model!r}", err=True)
            raise typer.Exit(2)
        labels = load_labels(manifest.resolve(spec.labels), None)
        names = [label.scientific_name for i, label in enumerate(labels) if i != spec.background_index]
        default = (
            manifest.resolve(spec.taxonomy)
            if spec.taxonomy
            else manifest.resolve(spec.labels).parent / TAXONOMY_FILE
        )
    else:
        from app.index.artifacts import IndexDir, IndexLoadError

        assert index is not None
        try:
            names = [label.scientific_name for label in IndexDir(index).load().labels]
        except IndexLoadError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc
        default = index / TAXONOMY_FILE
    target = out or default

    async def run() -> None:
        client = GbifClient(settings)
        try:
            report = await link_names(names, client, target, rate=rate, kingdom=kingdom, progress=progress)
        finally:
            await client.aclose()
        for item in report.unresolved:
            hint = f" (GBIF suggests {item.suggestion})" if item.suggestion else ""
            typer.echo(f"unresolved: {item.name}: {item.matchType}{hint}")
        for name, error in report.failed:
            typer.echo(f"failed: {name}: {error}")
        typer.echo(
            f"{target}: {report.linked} of {len(names)} names linked, {len(report.unresolved)} unresolved, "
            f"{len(report.failed)} failed (rerun to retry); {report.resumed} resumed from the file"
        )
        if model is not None and spec is not None and spec.taxonomy is None:
            shown = (
                target.relative_to(manifest.base_dir) if target.is_relative_to(manifest.base_dir) else target
            )
            typer.echo(f'add  taxonomy = "{shown}"  to the {model} entry of the manifest to serve it')
        if report.failed:
            raise typer.Exit(1)

    asyncio.run(run())


@cli.command("index-info")
def index_info(index: Annotated[Path, typer.Argument(help="index folder")]) -> None:
    """Print the current version's manifest."""
    from app.index.artifacts import IndexDir, IndexLoadError

    try:
        typer.echo(IndexDir(index).load().manifest.model_dump_json(indent=2))
    except IndexLoadError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc


def _labelled(dataset: Path) -> list[Any]:
    from app.index.species_folders import labelled_images

    try:
        return labelled_images(dataset)
    except (ValueError, FileNotFoundError) as exc:
        raise _fail(str(exc)) from exc


@cli.command()
def evaluate(
    dataset: Dataset,
    out: Annotated[Path, typer.Option(help="report folder: report.json, per_class.csv, confusion.png, ...")],
    model: Annotated[
        str | None, typer.Option(help="a classifier's (or trained head's) manifest name")
    ] = None,
    index: Annotated[Path | None, typer.Option(help="an index folder: evaluate /img_url's lookup")] = None,
    top_k: Annotated[int, typer.Option(min=5, max=100, help="answers kept per photo")] = 5,
    workers: Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """How good is a model on YOUR labelled photos: top-1, top-5, macro-F1, per-class
    precision/recall/support, a confusion matrix PNG and a page of the worst mistakes."""
    from app.training.evaluate import evaluate as score
    from app.training.evaluate import write_report
    from app.training.predictions import with_index, with_model

    if (model is None) == (index is None):
        raise _fail("give exactly one of --model or --index")
    settings = Settings()
    images = _labelled(dataset)
    paths = [image.path for image in images]
    n_workers = workers or settings.inference_workers
    if model is not None:
        registry, entry = _model(settings, model, "classifier")
        try:
            with _bar(len(paths), f"evaluating {model}", progress) as bar:
                predictions = with_model(
                    entry, paths, settings, top_k=top_k, workers=n_workers, on_progress=bar.update
                )
        finally:
            registry.close()
    else:
        from app.index.artifacts import IndexDir, IndexLoadError

        assert index is not None
        try:
            species_index = IndexDir(index).load()
        except IndexLoadError as exc:
            raise _fail(str(exc)) from exc
        registry, embedder = _model(settings, species_index.manifest.embedder.name, "embedder")
        try:
            with _bar(len(paths), f"evaluating {index}", progress) as bar:
                predictions = with_index(
                    species_index,
                    embedder,
                    paths,
                    settings,
                    top_k=top_k,
                    workers=n_workers,
                    on_progress=bar.update,
                )
        finally:
            registry.close()
    try:
        report = score(predictions, [image.scientific_name for image in images], dataset=str(dataset))
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    files = write_report(report, predictions, out)
    for path, error in predictions.failures:
        typer.echo(f"unreadable: {path}: {error}", err=True)
    typer.echo(
        f"{report.source} on {report.evaluated} photos of {len(report.classes)} species "
        f"({report.failed} unreadable): top-1 {report.top1:.3f}, top-5 {report.top5:.3f}, "
        f"macro-F1 {report.macro_f1:.3f}"
    )
    for c in report.classes:
        flag = "" if c.in_model else "  (not among the model's classes)"
        typer.echo(
            f"  {c.name:<34} P {c.precision:.2f}  R {c.recall:.2f}  F1 {c.f1:.2f}  n {c.support}{flag}"
        )
    typer.echo("wrote " + ", ".join(str(p) for p in files.values()))


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
    out_dir: Annotated[Path | None, typer.Option(help="default: NAME/ beside the manifest")] = None,
    register: Annotated[bool, typer.Option(help="add the entry to MODELS_MANIFEST")] = True,
    workers: Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Teach the service YOUR classes: a head on frozen embeddings (transfer learning), saved with
    its labels, a manifest entry and a validation report; served after a reload."""
    import shutil

    from app.imaging.augment import AUGMENTATIONS
    from app.index.embedding import Embedded, embed_paths, identity_of
    from app.models.manifest import ManifestError, add_entry
    from app.training.evaluate import evaluate as score
    from app.training.evaluate import write_report
    from app.training.heads import save_head
    from app.training.heads import train_head as fit
    from app.training.predictions import Predictions, ranked_from_scores

    if kind not in ("logistic", "dense"):
        raise _fail("--kind is logistic or dense")
    unknown = sorted(set(augment or []) - set(AUGMENTATIONS))
    if unknown:
        raise _fail(f"unknown augmentation {unknown}: choose from {sorted(AUGMENTATIONS)}")
    settings = Settings()
    manifest_path = settings.models_manifest
    target = out_dir or manifest_path.resolve().parent / name
    images = _labelled(dataset)
    registry, model = _model(settings, embedder, "embedder")
    work = target / ".work"
    try:
        paths = [image.path for image in images]

        def embed(augmented: str | None = None) -> Embedded:
            return embed_paths(
                model,
                paths,
                workers=workers or settings.inference_workers,
                max_pixels=settings.max_image_pixels,
                work_dir=work,
                progress=progress,
                augment=augmented,
            )

        embedded = embed()
        kept = [i for i, ok in enumerate(embedded.ok) if ok]
        labels = [images[i].scientific_name for i in kept]
        extra = [embed(a).features[kept] for a in augment or []]
        try:
            trained = fit(
                embedded.features[kept],
                labels,
                kind="dense" if kind == "dense" else "logistic",
                val_fraction=val_fraction,
                seed=seed,
                hidden=hidden,
                augmented=extra,
            )
        except ValueError as exc:
            raise _fail(str(exc)) from exc
        identity = identity_of(model)
    finally:
        registry.close()
    head = save_head(
        trained,
        target,
        embedder=identity,
        dataset=str(dataset),
        augment=list(augment or []),
        common_names={image.scientific_name: image.common_name for image in images},
    )
    shutil.rmtree(work, ignore_errors=True)
    val_paths = [images[kept[i]].path for i in trained.val_rows]
    predictions = Predictions(
        source=f"head {name} ({trained.kind} on {embedder}), validation split",
        classes=trained.classes,
        paths=val_paths,
        ranked=list(
            ranked_from_scores(trained.val_probabilities, trained.classes, background_index=None, top_k=5)
        ),
    )
    report = score(predictions, [labels[i] for i in trained.val_rows], dataset=str(dataset))
    write_report(report, predictions, target / "report")
    for path, error in embedded.failures:
        typer.echo(f"skipped: {path}: {error}", err=True)
    typer.echo(
        f"{name}: {trained.kind} head on {embedder}, {len(trained.classes)} classes, "
        f"{len(trained.train_rows)} training photos (+{trained.n_augmented} augmented), "
        f"{len(trained.val_rows)} validation photos"
    )
    typer.echo(
        f"training accuracy {trained.train_accuracy:.3f}, validation accuracy {trained.val_accuracy:.3f} "
        f"(macro-F1 {report.macro_f1:.3f}); report in {target / 'report'}"
    )
    if not register:
        typer.echo(f"saved {head}; not registered (--no-register)")
        return
    base = manifest_path.resolve().parent
    entry = {
        "name": name,
        "task": "classifier",
        "format": "head",
        "embedder": embedder,
        "file": str(head.relative_to(base) if head.is_relative_to(base) else head),
        "labels": str(
            (target / "labels.csv").relative_to(base)
            if target.is_relative_to(base)
            else target / "labels.csv"
        ),
        "output": "logits",
        "description": f"{trained.kind} head on {embedder}, trained on {dataset}",
    }
    try:
        added = add_entry(manifest_path, entry)
    except ManifestError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"{'added to' if added else 'already in'} {manifest_path}; serve it at /v1/classify/{name} "
        "after POST /v1/models/reload (admin token) or a restart"
    )


@cli.command("embedding-map")
def embedding_map(
    dataset: Dataset,
    embedder: Annotated[str, typer.Option(help="an embedder's manifest name")],
    out: Annotated[Path, typer.Option(help="PNG to write (a JSON of the figures goes beside it)")],
    seed: Annotated[int, typer.Option()] = 0,
    workers: Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """PCA and t-SNE (and UMAP, if installed) of the embeddings coloured by species, with
    k-means purity and NMI against the labels."""
    import tempfile

    from app.index.embedding import embed_paths
    from app.training.embedding_map import embedding_map as draw

    settings = Settings()
    images = _labelled(dataset)
    registry, model = _model(settings, embedder, "embedder")
    try:
        with tempfile.TemporaryDirectory() as work:
            embedded = embed_paths(
                model,
                [image.path for image in images],
                work_dir=Path(work),
                max_pixels=settings.max_image_pixels,
                workers=workers or settings.inference_workers,
                progress=progress,
            )
    finally:
        registry.close()
    labels = [image.scientific_name for image, ok in zip(images, embedded.ok, strict=True) if ok]
    try:
        report = draw(
            embedded.features[embedded.ok], labels, out, embedder=embedder, dataset=str(dataset), seed=seed
        )
    except ValueError as exc:
        raise _fail(str(exc)) from exc
    typer.echo(
        f"{report.photos} photos of {report.species} species: k-means (k={report.kmeans_k}) purity "
        f"{report.purity:.3f}, NMI {report.nmi:.3f}; PCA 2-D keeps {report.pca_variance_2d:.1%} "
        "of the variance; "
        f"wrote {out} ({', '.join(report.projections)}) and {out.with_suffix('.json')}"
    )


@cli.command()
def explain(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a photo")],
    model: Annotated[str, typer.Option(help="a classifier's manifest name")],
    out: Annotated[Path, typer.Option(help="PNG: the photo under the heat map")],
) -> None:
    """Where the model looked for its top answer: occlusion sensitivity, as POST /v1/explain."""
    import numpy as np

    from app.errors import ServiceError
    from app.explain import explain as run

    settings = Settings()
    registry, entry = _model(settings, model, "classifier")
    try:
        done = run(entry, image.read_bytes(), settings.max_image_pixels, True)
    except ServiceError as exc:
        raise _fail(exc.message) from exc
    finally:
        registry.close()
    assert done.png is not None
    out.write_bytes(done.png)
    result = done.explanation
    row, col = np.unravel_index(int(result.grid.argmax()), result.grid.shape)
    typer.echo(
        f"{entry.labels[result.class_index].scientific_name} ({result.score:.3f}); hiding the "
        f"{result.patch}px square at row {row}, column {col} of the "
        f"{result.grid.shape[0]}x{result.grid.shape[1]} "
        f"grid costs it most ({float(result.grid.max()):.3f}); wrote {out}"
    )


def main() -> None:
    cli()
