"""What the commands share: failing with a reason, opening a model, progress bars, datasets,
optional extras."""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, cast

import typer

from app.errors import ServiceError

if TYPE_CHECKING:
    from app.core import Label
    from app.enrich.taxonomy import Rollup
    from app.identification.request import GeoMode, Place, Steering
    from app.index.species_folders import LabelledImage
    from app.models.registry import LoadedModel
    from app.settings import Settings
    from app.wiring import Services

Dataset = Annotated[
    Path, typer.Argument(exists=True, help="one folder per species, or a CSV of path,label[,common_name]")
]
Workers = Annotated[int | None, typer.Option(min=1, help="default: ADMISSION_INFERENCE_WORKERS")]
Progress = Annotated[bool, typer.Option(help="show a progress bar")]
Taxon = Annotated[
    str | None, typer.Option(help="only species under this taxon: a GBIF key or a name of any rank (Vanessa)")
]
SpeciesListOption = Annotated[
    str | None,
    typer.Option("--species-list", help="only these species: a list installed in LISTS_DIR, or a file"),
]
Lat = Annotated[float | None, typer.Option(min=-90, max=90, help="WGS84 latitude")]
Lon = Annotated[float | None, typer.Option(min=-180, max=180, help="WGS84 longitude")]
Date = Annotated[str | None, typer.Option(help="ISO date, e.g. 2026-06-21")]
Geo = Annotated[str, typer.Option(help="what --lat/--lon do: prior, filter or off")]
MinScore = Annotated[float | None, typer.Option(min=0.0, max=1.0, help="default: RANKING_MIN_SCORE")]
RollupThreshold = Annotated[
    float | None, typer.Option(min=0.0, max=1.0, help="default: RANKING_ROLLUP_THRESHOLD")
]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings() -> Settings:
    from app.settings import Settings

    return Settings()


@contextmanager
def open_services(
    config: Settings, *, only: str | None = None, workers: int | None = None
) -> Iterator[tuple[Services, asyncio.Runner]]:
    """The server's services (``app.wiring``), loaded in the foreground, with the event loop to
    run their coroutines on; ``only``: just that model (and a head's embedder); ``workers``: in
    place of ADMISSION_INFERENCE_WORKERS. Everything is closed on exit."""
    from app.wiring import running_services

    with running_services(config, only=only, workers=workers) as opened:
        yield opened


@contextmanager
def open_model(config: Settings, name: str, task: str, workers: int | None = None) -> Iterator[LoadedModel]:
    """Load just ``name`` (and a head's embedder), hand it out, close everything on exit; exit 2
    with the reason when it is not usable."""
    with open_services(config, only=name, workers=workers) as (services, _):
        try:
            model = services.registry.get_ready(name, task=task)
        except ServiceError as exc:
            raise fail(exc.message) from exc
        yield model


def steering(
    config: Settings,
    taxon: str | None = None,
    species_list: str | None = None,
    geo: str = "prior",
    min_score: float | None = None,
    rollup_threshold: float | None = None,
) -> Steering:
    """What the endpoints' steering parameters say, from the options: a ``--species-list`` that
    is a file is read as an upload is, else it names an installed list. Exit 2 with the reason."""
    from app.identification.request import Steering
    from app.identification.species_lists import SpeciesLists

    if geo not in ("off", "prior", "filter"):
        raise fail(f"--geo {geo!r}: choose off, prior or filter")
    lists = SpeciesLists.from_settings(config.lists)
    try:
        listed = None
        if species_list is not None:
            path = Path(species_list)
            listed = (
                lists.upload(path.read_bytes(), path.name) if path.is_file() else lists.load(species_list)
            )
        return Steering(taxon, listed, cast("GeoMode", geo), min_score, rollup_threshold)
    except ServiceError as exc:
        raise fail(exc.message) from exc


def place(
    lat: float | None, lon: float | None, date: str | None, geo: str, *, filter_needs_place: bool = True
) -> Place | None:
    """The place the options give, checked as the API checks it; exit 2 with the reason.
    ``filter_needs_place``: False where the photos' source gives places (``batch``)."""
    from app.identification.request import Place

    if (lat is None) != (lon is None):
        raise fail("give --lat and --lon together")
    if geo == "filter" and lat is None and filter_needs_place:
        raise fail("--geo filter keeps the species recorded near a place: give --lat and --lon")
    when = iso_date(date)
    return Place(lat, lon, when) if lat is not None and lon is not None else None


def iso_date(text: str | None, option: str = "--date") -> dt.date | None:
    try:
        return dt.date.fromisoformat(text) if text else None
    except ValueError as exc:
        raise fail(f"{option} {text!r} is not an ISO date (YYYY-MM-DD)") from exc


def bar(total: int, what: str, progress: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="photo", desc=what, disable=not progress)


def labelled(dataset: Path) -> list[LabelledImage]:
    from app.index.species_folders import labelled_images

    try:
        return labelled_images(dataset)
    except (ValueError, FileNotFoundError) as exc:
        raise fail(str(exc)) from exc


def echo_answer(
    hits: Sequence[tuple[float, Label, str]], no_match_reason: str | None, rollup: Rollup | None
) -> None:
    """The text form of an answer: ``SCORE  Scientific name (Common name)SUFFIX`` per species,
    then why there is no match and the rollup, if any."""
    for score, label, suffix in hits:
        common = f" ({label.common_name})" if label.common_name else ""
        typer.echo(f"{score:.4f}  {label.scientific_name}{common}{suffix}")
    if no_match_reason is not None:
        typer.echo(f"no match: {no_match_reason}")
    if rollup is not None:
        typer.echo(f"it is at least {rollup.rank} {rollup.name} ({rollup.score:.4f})")


def require_extra(module: str, extra: str, command: str) -> None:
    """Exit 2 naming the extra to install when an optional dependency is missing (the Docker
    image carries none of them)."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise fail(f"{command} needs the '{extra}' extra: pip install 'species-id[{extra}]'") from exc
