"""build-range: a GBIF occurrence download -> the range table of GEO_PRIOR_SOURCE=table."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import Progress, fail, require_extra, settings


@cli.command("build-range")
def build_range(
    occurrences: Annotated[
        Path,
        typer.Argument(
            help="a GBIF download: SIMPLE_CSV (.zip or unzipped), a Darwin Core Archive (.zip or "
            "folder), or Parquet with the snapshot's columns (a file or a folder of files)"
        ),
    ],
    out: Annotated[Path, typer.Option(help="the table to write (GEO_PRIOR_TABLE of the server)")],
    cell_deg: Annotated[
        float | None, typer.Option(min=0.01, max=10, help="cell size in degrees; default GEO_PRIOR_CELL_DEG")
    ] = None,
    engine: Annotated[
        str, typer.Option(help="local, or ray (Parquet: one Ray task per file; the 'ray' extra)")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option(help="a Ray cluster (e.g. ray://head:10001); default RAY_ADDRESS or here")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(min=1, help="ray: CPUs of a Ray started here; default all")
    ] = None,
    progress: Progress = True,
) -> None:
    """Count the download's records per species per grid cell and month into a range table.

    Rows without coordinates, out of range, absent, without a species or with a geospatial issue
    are counted and skipped; the counts are printed. Then serve it with
    GEO_PRIOR_SOURCE=table GEO_PRIOR_TABLE=OUT."""
    from app.services.range_build import EmptyTable, NotOccurrences, build_range_table

    if engine not in ("local", "ray"):
        raise fail("--engine is local or ray")
    if engine == "ray":
        require_extra("ray", "ray", "--engine ray")
    from tqdm import tqdm

    size = cell_deg if cell_deg is not None else settings().geo_prior.cell_deg
    with tqdm(unit=" records", unit_scale=True, desc="build-range", disable=not progress, leave=False) as bar:
        try:
            report = build_range_table(
                occurrences,
                out,
                size,
                engine="ray" if engine == "ray" else "local",
                ray_address=ray_address,
                workers=workers or os.cpu_count() or 1,
                progress=bar.update,
            )
        except NotOccurrences as exc:
            raise fail(str(exc)) from exc
        except EmptyTable as exc:
            for line in exc.report.lines():
                typer.echo(line)
            raise fail(str(exc), 1) from exc
        except ValueError as exc:  # a cell size too fine for the species (int64 codes)
            raise fail(str(exc)) from exc
    for line in report.lines():
        typer.echo(line)
    typer.echo(f"serve it: GEO_PRIOR_SOURCE=table GEO_PRIOR_TABLE={out}")
