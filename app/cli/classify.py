"""classify: one photo, or every photo of a folder, through the server's identify service."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

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
    Workers,
    bar,
    echo_answer,
    fail,
    open_services,
    place,
    settings,
    steering,
)
from app.errors import ServiceError

if TYPE_CHECKING:
    from app.identification.plan import Plan
    from app.identification.service import Identifier
    from app.models.registry import LoadedModel


@cli.command()
def classify(
    photos: Annotated[Path, typer.Argument(exists=True, help="a photo, or a folder of photos (recursive)")],
    model: Annotated[str, typer.Option(help="a classifier's manifest name (a trained head too)")],
    top_k: Annotated[int, typer.Option(min=1, max=100)] = 5,
    out: Annotated[
        Path | None, typer.Option(help="CSV of the top-k per photo (a folder's default: stdout)")
    ] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="one photo: the JSON /v1/classify/MODEL would answer")
    ] = False,
    lat: Lat = None,
    lon: Lon = None,
    date: Date = None,
    geo: Geo = "prior",
    taxon: Taxon = None,
    species_list: SpeciesListOption = None,
    min_score: MinScore = None,
    rollup_threshold: RollupThreshold = None,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Classify one photo, or every photo in a folder (batched), exactly as the server would.

    A folder gives a CSV (path,rank,scientific_name,score,error); photos that cannot be read are
    listed with their error, not fatal.
    """
    from app.identification.request import Request
    from app.imaging.photo import Photo

    config = settings()
    where = place(lat, lon, date, geo)
    steered = steering(config, taxon, species_list, geo, min_score, rollup_threshold)
    with open_services(config, only=model, workers=workers) as (services, loop):
        identifier = services.identifier
        try:
            plan = identifier.plan(model=model, steering=steered)
            if photos.is_dir():
                _folder(identifier, plan.models[0], photos, top_k, out, progress, plan)
                return
            photo = Photo(data=photos.read_bytes(), source="file", name=str(photos))
            request = Request([photo], where, steered, top_k, model=model, scores="model", with_index=False)
            found = loop.run(identifier.identify(request, plan))
        except ServiceError as exc:
            raise fail(exc.message) from exc
    if json_output:
        from app.api.presenters import classification

        typer.echo(classification(found).model_dump_json(by_alias=True))
        return
    from app.api.presenters import classic_reason

    echo_answer([(h.score, h.label, "") for h in found.species], classic_reason(found), found.rollup)


def _folder(
    identifier: Identifier,
    model: LoadedModel,
    folder: Path,
    top_k: int,
    out: Path | None,
    progress: bool,
    plan: Plan,
) -> None:
    from app.index.species_folders import IMAGE_SUFFIXES
    from app.services.predictions import predictions_of_model
    from app.training.predictions import write_predictions_csv

    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not paths:
        raise fail(f"no photos under {folder}")
    with bar(len(paths), f"classifying ({model.name})", progress) as shown:
        found = identifier.identify_files(
            model, paths, top_k=top_k, workers=identifier.runner.workers, on_progress=shown.update, plan=plan
        )
    predictions = predictions_of_model(model, found)
    if out is None:
        write_predictions_csv(predictions, sys.stdout)
    else:
        with out.open("w", newline="", encoding="utf-8") as fh:
            write_predictions_csv(predictions, fh)
    for path, error in found.failures:
        typer.echo(f"unreadable: {path}: {error}", err=True)
    written = f"; wrote {out}" if out else ""
    typer.echo(
        f"{len(paths) - len(found.failures)} photos classified, {len(found.failures)} unreadable{written}",
        err=True,
    )
    sys.stdout.flush()
