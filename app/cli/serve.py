"""serve: the HTTP service."""

from __future__ import annotations

from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import settings


@cli.command()
def serve(
    host: Annotated[str | None, typer.Option(help="default: HOST or 127.0.0.1")] = None,
    port: Annotated[int | None, typer.Option(help="default: PORT or 8000")] = None,
) -> None:
    """Run the HTTP service (uvicorn, one process; scale with replicas)."""
    import uvicorn

    server = settings().server
    uvicorn.run(
        "app.main:app",
        host=host or server.host,
        port=server.port if port is None else port,
        log_level=server.log_level,
        proxy_headers=True,
        timeout_graceful_shutdown=30,
    )
