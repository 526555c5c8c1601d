"""link-gbif: a label map (or an index's species) resolved against GBIF into a taxonomy file."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import Progress, fail, settings


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
    progress: Progress = True,
) -> None:
    """Resolve every label against GBIF once, into a taxonomy file the service joins onto results.

    Resumable: labels already in the file are skipped. Only EXACT matches are linked; the rest
    are listed.
    """
    from app.errors import ServiceError
    from app.index.artifacts import IndexLoadError
    from app.models.manifest import ManifestError
    from app.services.gbif_link import index_target, link, model_target

    if (model is None) == (index is None):
        raise fail("give exactly one of --model or --index")
    config = settings()
    try:
        if model is not None:
            target = model_target(config.models, model, out)
        else:
            assert index is not None
            target = index_target(index, out)
    except ServiceError as exc:
        raise fail(exc.message) from exc
    except (IndexLoadError, ManifestError) as exc:
        raise fail(str(exc)) from exc
    report = asyncio.run(link(target, config.gbif, rate=rate, kingdom=kingdom, progress=progress))
    for item in report.unresolved:
        hint = f" (GBIF suggests {item.suggestion})" if item.suggestion else ""
        typer.echo(f"unresolved: {item.name}: {item.matchType}{hint}")
    for name, error in report.failed:
        typer.echo(f"failed: {name}: {error}")
    typer.echo(
        f"{target.out}: {report.linked} of {len(target.names)} names linked, {len(report.unresolved)} "
        f"unresolved, {len(report.failed)} failed (rerun to retry); {report.resumed} resumed from the file"
    )
    if target.manifest_hint:
        typer.echo(target.manifest_hint)
    if target.declare is not None:
        manifest, name, path = target.declare
        typer.echo(f'declared  taxonomy = "{path}"  for {name} in {manifest}: served after a reload')
    if report.failed:
        raise typer.Exit(1)
