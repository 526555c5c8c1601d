"""identify: one observation (1-5 photos, where and when) or a folder of them, through the
server's identification service (every model at once, calibrated, with the geo prior)."""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, TextIO

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
    from app.identification.answer import Answer
    from app.identification.request import Place, Steering
    from app.identification.service import Identifier

CSV_FIELDS = [
    "observation", "rank", "model", "scientific_name", "common_name", "score", "no_match_reason", "error",
]  # fmt: skip


@dataclass(frozen=True)
class _Where:
    """What every observation of the command shares."""

    place: Place | None
    groups: frozenset[str] | None
    top_k: int
    steering: Steering


@cli.command()
def identify(
    photos: Annotated[
        list[Path], typer.Argument(exists=True, help="1-5 photos of one organism, or one folder")
    ],
    lat: Lat = None,
    lon: Lon = None,
    date: Date = None,
    groups: Annotated[list[str] | None, typer.Option(help="only these groups' models")] = None,
    top_k: Annotated[int, typer.Option(min=1, max=100)] = 5,
    taxon: Taxon = None,
    species_list: SpeciesListOption = None,
    geo: Geo = "prior",
    min_score: MinScore = None,
    rollup_threshold: RollupThreshold = None,
    out: Annotated[Path | None, typer.Option(help="a folder's CSV (default: stdout)")] = None,
    json_output: Annotated[bool, typer.Option("--json", help="the JSON /v1/identify answers")] = False,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Identify an observation exactly as POST /v1/identify does (the species index's answer
    included, when one is served). A FOLDER holds one observation per sub-folder (its photos), or
    is a CSV `observation,path`; the answers go to a CSV."""
    where_ = place(lat, lon, date, geo)
    config = settings()
    steered = steering(config, taxon, species_list, geo, min_score, rollup_threshold)
    where = _Where(where_, frozenset(groups) if groups else None, top_k, steered)
    single = photos[0] if len(photos) == 1 else None
    folder = single if single is not None and (single.is_dir() or single.suffix == ".csv") else None
    observations = _observations(folder) if folder is not None else {"photos": photos}
    with open_services(config, workers=workers) as (services, loop):
        identifier = services.identifier
        if folder is None:
            _print(loop.run(_one(identifier, observations["photos"], where)), json_output)
            return
        with out.open("w", newline="", encoding="utf-8") if out else _stdout() as fh:
            loop.run(_many(identifier, observations, where, fh, progress))


def _observations(folder: Path) -> dict[str, list[Path]]:
    from app.index.species_folders import IMAGE_SUFFIXES

    grouped: dict[str, list[Path]] = {}
    if folder.suffix == ".csv":
        with folder.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                path = Path(row["path"])
                grouped.setdefault(row["observation"], []).append(
                    path if path.is_absolute() else folder.parent / path
                )
    else:
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            found = sorted(p for p in sub.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if found:
                grouped[sub.name] = found
    if not grouped:
        raise fail(f"no observations in {folder}: sub-folders of photos, or a CSV observation,path")
    return grouped


def _stdout() -> TextIO:
    return open(sys.stdout.fileno(), "w", newline="", encoding="utf-8", closefd=False)


async def _one(identifier: Identifier, paths: list[Path], where: _Where) -> Answer:
    from app.identification.request import MAX_PHOTOS, Request
    from app.imaging.photo import Photo

    if not 1 <= len(paths) <= MAX_PHOTOS:
        raise fail(f"an observation is 1 to {MAX_PHOTOS} photos, not {len(paths)}")
    photos = [Photo(data=p.read_bytes(), source="file", name=str(p)) for p in paths]
    try:
        return await identifier.identify(
            Request(photos, where.place, where.steering, where.top_k, groups=where.groups)
        )
    except ServiceError as exc:
        raise fail(exc.message) from exc


async def _many(
    identifier: Identifier,
    observations: dict[str, list[Path]],
    where: _Where,
    fh: TextIO,
    progress: bool,
) -> None:
    writer = csv.DictWriter(fh, CSV_FIELDS)
    writer.writeheader()
    failed = 0
    with bar(len(observations), "identifying", progress) as shown:
        for name, paths in observations.items():
            try:
                answer = await _one(identifier, paths, where)
            except typer.Exit:
                failed += 1
                writer.writerow({"observation": name, "error": "see the message above"})
                continue
            finally:
                shown.update(1)
            reason = answer.no_match_reason or ""
            if not answer.species:
                writer.writerow({"observation": name, "no_match_reason": reason})
            for species in answer.species:
                writer.writerow({
                    "observation": name, "rank": species.rank, "model": species.model,
                    "scientific_name": species.label.scientific_name,
                    "common_name": species.label.common_name or "", "score": f"{species.score:.6f}",
                    "no_match_reason": reason,
                })  # fmt: skip
    typer.echo(f"{len(observations) - failed} observations identified, {failed} failed", err=True)


def _print(answer: Answer, json_output: bool) -> None:
    if json_output:
        from app.api.presenters import observation

        typer.echo(observation(answer).model_dump_json(by_alias=True))
        return
    hits = [(s.score, s.label, f"  [{s.model}]") for s in answer.species]
    echo_answer(hits, answer.no_match_reason, answer.rollup)
    typer.echo(f"why: {answer.why}")
    if answer.filters is not None:
        f = answer.filters
        kept = f"{f.kept_classes} classes kept, holding {f.kept_mass:.4f}" if f.kept_mass is not None else ""
        typer.echo(
            f"filters: {kept}" + (f"; not on any model: {', '.join(f.unmatched)}" if f.unmatched else "")
        )
    if answer.geo.status != "not_requested":
        typer.echo(
            f"geo prior: {answer.geo.status}" + (f" ({answer.geo.reason})" if answer.geo.reason else "")
        )
