"""The command line: one thin module per command over the same services the server uses.

Importing this package imports no model runtime and no optional extra: each command imports
what it needs when it runs, and says which extra to install when that is missing.
"""

from app.cli import (  # noqa: F401
    batch,
    calibrate,
    classify,
    evaluate,
    explain,
    gbif,
    identify,
    index,
    models,
    range,
    serve,
    taxonomy,
    train,
)
from app.cli.app import cli


def main() -> None:
    cli()


__all__ = ["cli", "main"]
