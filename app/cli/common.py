"""What the commands share: failing with a reason, opening a model, progress bars, datasets,
optional extras."""

from __future__ import annotations

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
    from app.index.species_folders import LabelledImage
    from app.models.registry import LoadedModel
    from app.services.geo import GeoMode
    from app.services.steering import Steering
    from app.settings import Settings

Dataset = Annotated[
    Path, typer.Argument(exists=True, help="one folder per species, or a CSV of path,label[,common_name]")
]
Workers = Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")]
Progress = Annotated[bool, typer.Option(help="show a progress bar")]
Taxon = Annotated[
    str | None, typer.Option(help="only species under this taxon: a GBIF key or a name of any rank (Vanessa)")
]
SpeciesListOption = Annotated[
    str | None,
    typer.Option("--species-list", help="only these species: a list installed in LISTS_DIR, or a file"),
]
MinScore = Annotated[float | None, typer.Option(min=0.0, max=1.0, help="default: MIN_SCORE")]
RollupThreshold = Annotated[float | None, typer.Option(min=0.0, max=1.0, help="default: ROLLUP_THRESHOLD")]


def fail(message: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def settings() -> Settings:
    from app.settings import Settings

    return Settings()


@contextmanager
def open_model(config: Settings, name: str, task: str) -> Iterator[LoadedModel]:
    """Load just ``name`` (and a head's embedder), hand it out, close everything on exit; exit 2
    with the reason when it is not usable."""
    from app.models.registry import ready_model

    try:
        with ready_model(config.models, name, task) as model:
            yield model
    except ServiceError as exc:
        raise fail(exc.message) from exc


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
    from app.services.species_lists import SpeciesLists
    from app.services.steering import Steering

    if geo not in ("off", "prior", "filter"):
        raise fail(f"--geo {geo!r}: choose off, prior or filter")
    lists = SpeciesLists.from_settings(config.ranking)
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
