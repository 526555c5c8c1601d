"""Command line: thin wrappers over the same registry and pipeline the server uses."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.settings import Settings

if TYPE_CHECKING:
    from app.models.registry import Registry

cli = typer.Typer(help="Species identification service.", no_args_is_help=True, add_completion=False)


def _registry(settings: Settings) -> Registry:
    """The same loading the server's lifespan does, run in the foreground."""
    from app.models.manifest import load_manifest
    from app.models.registry import Registry

    registry = Registry.from_settings(load_manifest(settings.models_manifest), settings)
    registry.load_all()
    return registry


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


def main() -> None:
    cli()
