"""models: load the manifest and print each model's state, as GET /v1/models does."""

from __future__ import annotations

import json
from dataclasses import asdict

import typer

from app.cli.app import cli
from app.cli.common import fail, open_services, settings


@cli.command()
def models() -> None:
    """Load every model in the manifest and print its state as JSON (exit 1 if none is ready)."""
    from app.models.manifest import ManifestError
    from app.services.catalog import status_of

    try:
        with open_services(settings()) as (services, _):
            rows = [asdict(status_of(model)) for model in services.registry.entries()]
    except ManifestError as exc:
        raise fail(str(exc)) from exc
    typer.echo(json.dumps(rows, indent=2))
    if not any(row["state"] == "ready" for row in rows):
        raise typer.Exit(1)
