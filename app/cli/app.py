"""The Typer application every command module registers on."""

import typer

cli = typer.Typer(help="Species identification service.", no_args_is_help=True, add_completion=False)
