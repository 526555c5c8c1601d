"""serve: the HTTP service; build-default-index: its first-run species index."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.app import cli
from app.cli.common import Progress, fail, settings
from app.services.index_hint import DEFAULT_PHOTOS

if TYPE_CHECKING:
    from app.settings import Settings


class DefaultIndex(StrEnum):
    auto = "auto"
    off = "off"


Photos = Annotated[
    Path,
    typer.Option(
        help="labelled photos for the default index: one folder per species, a CSV of path,label, "
        "or the Leeds butterflies layout (images/ + descriptions/)"
    ),
]


def _first_run(config: Settings, mode: DefaultIndex, photos: Path) -> None:
    """Before uvicorn starts: builds the default index (auto) when INDEX_DIR has none, and says
    what it built, or how to build one, on stderr (the log)."""
    from app.index.artifacts import IndexDir
    from app.services.index_hint import absent_note

    if IndexDir(config.index.dir).current_version() is not None:
        return
    if mode is DefaultIndex.off:
        typer.echo(f"note: {absent_note(config.index.dir)}", err=True)
        return
    from app.services.default_index import ensure_default_index

    typer.echo(f"no species index in {config.index.dir}: building a default one from {photos} ...", err=True)
    outcome = ensure_default_index(config, photos, progress=sys.stderr.isatty())
    typer.echo(outcome.message if outcome.built else f"note: {outcome.message}", err=True)


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default: PORT or 8000")] = None,
    default_index: Annotated[
        DefaultIndex,
        typer.Option(
            help="auto: when INDEX_DIR holds no index, first build one from --photos with the "
            "offline embedder (aiy_insects_features; nothing downloaded); off: only say how"
        ),
    ] = DefaultIndex.off,
    photos: Photos = DEFAULT_PHOTOS,
) -> None:
    """Run the HTTP service (uvicorn, one process; scale with replicas)."""
    import uvicorn

    config = settings()
    _first_run(config, default_index, photos)
    server = config.server
    uvicorn.run(
        "app.main:app",
        host=host or server.host,
        port=server.port if port is None else port,
        log_level=server.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )


@cli.command("build-default-index")
def build_default_index(photos: Photos = DEFAULT_PHOTOS, progress: Progress = True) -> None:
    """When INDEX_DIR holds no index, build the default one `serve --default-index auto` builds
    (exit 0 if built or one exists; 2, saying how to build one, if it could not)."""
    from app.services.default_index import ensure_default_index

    outcome = ensure_default_index(settings(), photos, progress=progress)
    if outcome.status == "not_built":
        raise fail(outcome.message)
    typer.echo(outcome.message)
