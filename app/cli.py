"""Command line: thin wrappers over the same registry and pipeline the server uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.settings import Settings

if TYPE_CHECKING:
    from app.models.registry import LoadedModel, Registry

cli = typer.Typer(help="Species identification service.", no_args_is_help=True, add_completion=False)


def _registry(settings: Settings, only: str | None = None) -> Registry:
    """The same loading the server's lifespan does, run in the foreground (``only``: load just
    that model)."""
    from app.models.manifest import load_manifest
    from app.models.registry import Registry

    manifest = load_manifest(settings.models_manifest)
    if only is not None:
        manifest = manifest.model_copy(update={"models": [m for m in manifest.models if m.name == only]})
    registry = Registry.from_settings(manifest, settings)
    registry.load_all()
    return registry


def _embedder(settings: Settings, name: str) -> tuple[Registry, LoadedModel]:
    from app.errors import ServiceError

    registry = _registry(settings, only=name)
    try:
        return registry, registry.get(name, task="embedder")
    except ServiceError as exc:
        registry.close()
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc


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

    registry = _registry(Settings())
    rows = [model_info(entry).model_dump() for entry in registry.entries()]
    typer.echo(json.dumps(rows, indent=2))
    registry.close()
    if not any(row["state"] == "ready" for row in rows):
        raise typer.Exit(1)


@cli.command()
def classify(
    image: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="a photo")],
    model: Annotated[str, typer.Option(help="a classifier's manifest name")],
    top_k: Annotated[int, typer.Option(min=1, max=100)] = 5,
) -> None:
    """Classify one photo in-process, exactly as the server would."""
    from app.errors import ServiceError
    from app.pipeline import run_model
    from app.ranking import rank

    settings = Settings()
    registry = _registry(settings)
    try:
        entry = registry.get(model, task="classifier")
        output = run_model(entry, image.read_bytes(), settings.max_image_pixels)
    except ServiceError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(2) from exc
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
    images_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="one folder per species")],
    out: Annotated[Path, typer.Option(help="index folder (INDEX_DIR of the server)")],
    embedder: Annotated[str, typer.Option(help="an embedder's manifest name")],
    dims: Annotated[int, typer.Option(min=2, max=4096, help="PCA dimensions kept")] = 128,
    chunk_size: Annotated[int, typer.Option(min=1, help="photos per resumable chunk")] = 256,
    workers: Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")] = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="embedding chunks (default OUT/.work, removed on success)")
    ] = None,
    progress: Annotated[bool, typer.Option(help="show a progress bar")] = True,
) -> None:
    """Embed labelled photos, fit PCA, build a FAISS index and publish it as OUT's current version.

    Re-running after an interruption reuses the chunks already embedded.
    """
    from app.index.builder import build_index as build

    settings = Settings()
    registry, model = _embedder(settings, embedder)
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
    images_dir: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="one folder per species")],
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
    registry, model = _embedder(settings, name)
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


def main() -> None:
    cli()
