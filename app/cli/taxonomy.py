"""build-taxonomy: the classifiers' labels classified by NCBI Taxonomy, offline, into the small
files shipped beside the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, get_args

import typer

from app.cli.app import cli
from app.cli.common import Progress, fail, require_extra, settings


@cli.command("build-taxonomy")
def build_taxonomy(
    model: Annotated[
        list[str] | None,
        typer.Option(help="a classifier's manifest name (repeat it); default: every classifier"),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option(help="a folder for the files; default: each entry's offline_taxonomy, else taxonomy/"),
    ] = None,
    progress: Progress = True,
) -> None:
    """Classify every label by NCBI Taxonomy (offline: taxoniq's snapshot), one JSON line per label.

    A name NCBI lacks falls back to its species, then its genus, then the class (or kingdom) all
    the model's species share; each line says which. Rerun it when a label map changes: the same
    snapshot gives the same files.
    """
    require_extra("taxoniq", "taxonomy", "build-taxonomy")
    from tqdm import tqdm

    from app.errors import ServiceError
    from app.models.manifest import ManifestError
    from app.services.ncbi_taxonomy import Match, Ncbi, build, targets

    config = settings()
    try:
        found = targets(config.models, model, out)
    except ServiceError as exc:
        raise fail(exc.message) from exc
    except (ManifestError, OSError, ValueError) as exc:
        raise fail(str(exc)) from exc
    if not found:
        raise fail("no classifier with a label map in the manifest")
    ncbi = Ncbi()
    typer.echo(f"NCBI Taxonomy from {ncbi.snapshot() or 'taxoniq'}")
    for target in found:
        with tqdm(total=len(target.names), unit="label", desc=target.model, disable=not progress) as shown:
            try:
                report = build(target, ncbi, lambda: shown.update(1))
            except ManifestError as exc:
                raise fail(str(exc)) from exc
        counts = ", ".join(f"{report.counts[m]} {m}" for m in get_args(Match))
        typer.echo(f"{report.out}: {len(target.names)} labels: {counts} ({report.bytes} bytes)")
        for name in report.unresolved:
            typer.echo(f"  unresolved: {name}")
        if report.manifest_hint:
            typer.echo(report.manifest_hint)
        if report.declared:
            typer.echo(f"declared in {report.declared}: served after a reload")
