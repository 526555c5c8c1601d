"""build-index, add-to-index, index-info: the species index /img_url searches."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import Dataset, Progress, Workers, fail, open_model, require_extra, settings


@cli.command("build-index")
def build_index(
    images_dir: Dataset,
    out: Annotated[Path, typer.Option(help="index folder (INDEX_DIR of the server)")],
    embedder: Annotated[str, typer.Option(help="an embedder's manifest name")],
    dims: Annotated[int, typer.Option(min=2, max=4096, help="PCA dimensions kept")] = 128,
    chunk_size: Annotated[int, typer.Option(min=1, help="photos per resumable chunk")] = 256,
    workers: Workers = None,
    work_dir: Annotated[
        Path | None, typer.Option(help="embedding chunks (default OUT/.work, removed on success)")
    ] = None,
    progress: Progress = True,
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

    Rerun after an interruption, it reuses the chunks already embedded (local engine); with
    --engine ray the embedding runs on Ray Data, PCA and FAISS stay here."""
    from app.index.builder import EmbedFn
    from app.index.builder import build_index as build

    if engine not in ("local", "ray"):
        raise fail("--engine is local or ray")
    if engine == "ray":
        require_extra("ray", "ray", "--engine ray")
    config = settings()
    n_workers = workers or config.admission.inference_workers
    with open_model(config, embedder, "embedder") as model:
        embed: EmbedFn | None = None
        if engine == "ray":
            from functools import partial

            from app.index.ray_engine import embed_with_ray

            embed = partial(
                embed_with_ray, model, (config.models.manifest, config.models.user_manifest),
                max_pixels=config.images.max_pixels,
                address=ray_address, actors=actors or n_workers, progress=progress,
            )  # fmt: skip
        try:
            report = build(
                images_dir, out, model, dims=dims, max_pixels=config.images.max_pixels,
                chunk_size=chunk_size, workers=n_workers, work_dir=work_dir, progress=progress, embed=embed,
            )  # fmt: skip
        except (ValueError, FileNotFoundError) as exc:
            raise fail(str(exc)) from exc
    m, kept = report.manifest, report.explained_variance
    variance = f", PCA keeps {kept:.1%} of the variance" if kept else ""
    typer.echo(
        f"published {out}/{m.version}: {m.n_vectors} photos of {m.n_species} species, "
        f"{m.index_type} index of {m.dim}-d vectors{variance}; "
        f"{report.skipped} photos skipped, {report.resumed_chunks} chunks resumed"
    )


@cli.command("add-to-index")
def add_to_index(
    images_dir: Dataset,
    index: Annotated[Path, typer.Option(help="index folder to extend")],
    progress: Progress = True,
) -> None:
    """Add photos (of known or new species) to an index without retraining; a running server
    picks the new version up on its next request."""
    from app.index.artifacts import IndexDir, IndexLoadError
    from app.index.builder import add_folder

    config = settings()
    index_dir = IndexDir(index)
    try:
        name = index_dir.load().manifest.embedder.name
    except IndexLoadError as exc:
        raise fail(str(exc)) from exc
    with open_model(config, name, "embedder") as model:
        try:
            extended, embedded = add_folder(
                images_dir, index_dir, model, max_pixels=config.images.max_pixels,
                workers=config.admission.inference_workers, progress=progress,
            )  # fmt: skip
        except (ValueError, FileNotFoundError, IndexLoadError) as exc:
            raise fail(str(exc)) from exc
    m = extended.manifest
    typer.echo(
        f"published {index}/{m.version}: now {m.n_vectors} photos of {m.n_species} species "
        f"({int(embedded.ok.sum())} added, {len(embedded.failures)} skipped)"
    )


@cli.command("index-info")
def index_info(index: Annotated[Path, typer.Argument(help="index folder")]) -> None:
    """Print the current version's manifest."""
    from app.index.artifacts import IndexDir, IndexLoadError

    try:
        typer.echo(IndexDir(index).load().manifest.model_dump_json(indent=2))
    except IndexLoadError as exc:
        raise fail(str(exc)) from exc
