"""calibrate: a classifier's temperature and scope threshold, fitted on labelled photos of its
own group, for /v1/identify."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from app.cli.app import cli
from app.cli.common import Dataset, Progress, Workers, bar, fail, labelled, open_model, settings


@cli.command()
def calibrate(
    dataset: Dataset,
    model: Annotated[str, typer.Option(help="a classifier's manifest name")],
    acceptance: Annotated[
        float, typer.Option(min=0.5, max=0.999, help="share of these photos the scope must accept")
    ] = 0.95,
    out: Annotated[
        Path | None, typer.Option(help="default: the entry's `calibration`, or calibration/NAME.json")
    ] = None,
    fitted_on: Annotated[str | None, typer.Option(help="how to name the photos in the file")] = None,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """Fit the temperature (probabilities comparable across models) and the scope threshold
    ("this model knows the photo") on photos of the model's group; print what they give."""
    from app.models.registry import read_manifests
    from app.services import calibration as service

    config = settings()
    manifest = read_manifests(config.models)
    spec = next((m for m in manifest.models if m.name == model), None)
    declared = manifest.resolve(spec.calibration, spec) if spec is not None and spec.calibration else None
    target = out or declared or manifest.base_dir / "calibration" / f"{model}.json"
    images = labelled(dataset)
    with (
        open_model(config, model, "classifier") as classifier,
        bar(len(images), "calibrating", progress) as shown,
    ):
        try:
            fitted = service.fit(
                classifier, images, dataset=fitted_on or str(dataset), max_pixels=config.images.max_pixels,
                workers=workers or config.admission.inference_workers, acceptance=acceptance,
                on_progress=shown.update,
            )  # fmt: skip
        except ValueError as exc:
            raise fail(str(exc)) from exc
    service.write(fitted.calibration, target)
    c = fitted.calibration
    for path, error in fitted.failures:
        typer.echo(f"unreadable: {path}: {error}", err=True)
    if fitted.not_in_model:
        typer.echo(f"not among the model's classes (threshold only): {', '.join(fitted.not_in_model)}")
    figures = ", ".join(f"{k} {v:.3f}" for k, v in c.figures.items())
    typer.echo(
        f"{model}: temperature {c.temperature:.3f} ({c.photos_in_model} photos of known species), scope "
        f"{c.scope_signal} >= {c.scope_threshold:.3f} ({c.acceptance:.0%} of {c.photos} photos); {figures}"
    )
    typer.echo(f"wrote {target}")
    if declared is None or declared.resolve() != target.resolve():
        shown_path = (
            target.relative_to(manifest.base_dir) if target.is_relative_to(manifest.base_dir) else target
        )
        origin = spec.manifest_file if spec is not None else None
        where = origin or "the manifest"
        typer.echo(f'add  calibration = "{shown_path}"  to the {model} entry of {where} to serve it')
