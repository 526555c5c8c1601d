"""batch: a whole collection (a folder, a CSV, a Camtrap DP package), each observation answered
as POST /v1/identify answers it; resumable; CSV, JSON lines, Camtrap DP and Darwin Core out."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import (
    Date,
    Geo,
    Lat,
    Lon,
    MinScore,
    Progress,
    RollupThreshold,
    SpeciesListOption,
    Taxon,
    fail,
    iso_date,
    place,
    require_extra,
    settings,
    steering,
)


@cli.command()
def batch(
    source: Annotated[
        Path, typer.Argument(help="a folder of photos, a CSV (path or url, ...), or a Camtrap DP package")
    ],
    out: Annotated[Path, typer.Option(help="where the journal and the outputs go (resumable)")],
    formats: Annotated[
        str, typer.Option("--format", help="comma-separated: csv, jsonl, camtrap-dp, dwca")
    ] = "csv,jsonl",
    group_by: Annotated[
        str, typer.Option(help="photo (each photo one observation), folder, or event (Camtrap DP)")
    ] = "photo",
    event_gap: Annotated[
        float, typer.Option(min=0.0, help="--group-by event: seconds between media that start a new event")
    ] = 60.0,
    groups: Annotated[list[str] | None, typer.Option(help="only these groups' models")] = None,
    taxon: Taxon = None,
    species_list: SpeciesListOption = None,
    geo: Geo = "prior",
    min_score: MinScore = None,
    rollup_threshold: RollupThreshold = None,
    top_k: Annotated[int, typer.Option(min=1, max=100)] = 5,
    lat: Lat = None,
    lon: Lon = None,
    date: Date = None,
    photo_metadata: Annotated[
        bool, typer.Option(help="use the photos' own EXIF GPS and date where the source gives none")
    ] = True,
    retry_failed: Annotated[bool, typer.Option(help="answer again the observations that failed")] = False,
    engine: Annotated[
        str, typer.Option(help="local, or ray (Ray Data; RAY_ADDRESS for a cluster)")
    ] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="local: inference threads; ray: actors (default: the cores)")
    ] = None,
    progress: Progress = True,
) -> None:
    """Identify every observation of SOURCE into DIR. Run it again to resume: what the journal
    in DIR holds is not answered again."""
    from app.batch.answering import Asked
    from app.batch.service import FORMATS, BatchError, RunOptions, run_collection, run_options
    from app.batch.sources import SourceError, read_source
    from app.identification.request import Defaults

    chosen = tuple(f.strip() for f in formats.split(",") if f.strip())
    unknown = [f for f in chosen if f not in FORMATS]
    if unknown or not chosen:
        raise fail(f"--format {formats!r}: choose from {', '.join(FORMATS)}")
    if group_by not in ("photo", "folder", "event"):
        raise fail(f"--group-by {group_by!r}: choose photo, folder or event")
    if engine not in ("local", "ray"):
        raise fail(f"--engine {engine!r}: choose local or ray")
    if engine == "ray":
        require_extra("ray", "ray", "--engine ray")
    config = settings()
    asked = Asked(
        steering(config, taxon, species_list, geo, min_score, rollup_threshold),
        frozenset(groups) if groups else None,
        top_k,
        Defaults(place(lat, lon, date, geo, filter_needs_place=False), iso_date(date)),
        photo_metadata,
    )
    try:
        found = read_source(source, group_by=group_by, event_gap=event_gap)  # type: ignore[arg-type]
    except SourceError as exc:
        raise fail(str(exc)) from exc
    for skipped in found.skipped:
        typer.echo(f"skipped: {skipped}", err=True)
    options = run_options(config, asked, found, group_by, event_gap)
    how = RunOptions(chosen, engine, retry_failed, workers, progress)  # type: ignore[arg-type]
    try:
        summary = run_collection(config, found, out, asked, options, how)
    except BatchError as exc:
        raise fail(str(exc)) from exc
    typer.echo(
        f"{summary.observations} observations: {summary.done} answered, {summary.failed} failed "
        f"({summary.answered_now} by this run, {summary.seconds:.1f} s)",
        err=True,
    )
    if summary.no_match:
        reasons = ", ".join(f"{reason} {n}" for reason, n in summary.no_match.most_common())
        typer.echo(f"no match: {reasons}", err=True)
    if summary.models:
        typer.echo("answered by: " + ", ".join(f"{m} {n}" for m, n in summary.models.most_common()), err=True)
    for path in summary.outputs:
        typer.echo(f"wrote {path}", err=True)
    if summary.failed:
        typer.echo(
            f"{summary.failed} failed: see `error` in the outputs; --retry-failed answers them again",
            err=True,
        )
    if summary.not_written:
        reasons = "; ".join(f"{name} not written: {why}" for name, why in summary.not_written.items())
        raise fail(f"{reasons} (the journal and the other outputs are in {out})")
