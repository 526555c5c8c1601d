"""What the commands share: failing with a reason, opening a model, progress bars, datasets,
optional extras."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.errors import ServiceError

if TYPE_CHECKING:
    from app.core import Label
    from app.enrich.taxonomy import Rollup
    from app.index.species_folders import LabelledImage
    from app.models.registry import LoadedModel
    from app.settings import Settings

Dataset = Annotated[
    Path, typer.Argument(exists=True, help="one folder per species, or a CSV of path,label[,common_name]")
]
Workers = Annotated[int | None, typer.Option(min=1, help="default: INFERENCE_WORKERS")]
Progress = Annotated[bool, typer.Option(help="show a progress bar")]


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
