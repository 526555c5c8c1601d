"""evaluate: how good a classifier, a trained head or the lookup index is on YOUR photos."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli.app import cli
from app.cli.common import (
    Dataset,
    Progress,
    Workers,
    bar,
    fail,
    labelled,
    open_services,
    require_extra,
    settings,
)
from app.errors import ServiceError

if TYPE_CHECKING:
    from app.services.evaluation import Evaluated
    from app.settings import Settings
    from app.training.evaluate import EvaluationReport


@dataclass(frozen=True)
class _Job:
    paths: list[Path]
    truths: list[str]
    out: Path
    dataset: str
    top_k: int
    workers: int
    progress: bool


@cli.command()
def evaluate(
    dataset: Dataset,
    out: Annotated[Path, typer.Option(help="report folder: report.json, per_class.csv, confusion.png, ...")],
    model: Annotated[
        str | None, typer.Option(help="a classifier's (or trained head's) manifest name")
    ] = None,
    index: Annotated[Path | None, typer.Option(help="an index folder: evaluate /img_url's lookup")] = None,
    top_k: Annotated[int, typer.Option(min=5, max=100, help="answers kept per photo")] = 5,
    workers: Workers = None,
    progress: Progress = True,
) -> None:
    """How good is a model on YOUR labelled photos: top-1, top-5, macro-F1, per-class
    precision/recall/support, the expected calibration error (ECE) with a reliability diagram,
    a confusion matrix PNG and a page of the worst mistakes."""
    if (model is None) == (index is None):
        raise fail("give exactly one of --model or --index")
    require_extra("sklearn", "training", "evaluate")
    config = settings()
    images = labelled(dataset)
    job = _Job(
        [i.path for i in images], [i.scientific_name for i in images], out, str(dataset), top_k,
        workers or config.admission.inference_workers, progress,
    )  # fmt: skip
    try:
        if model is not None:
            done = _with_model(config, model, job)
        else:
            assert index is not None
            done = _with_index(config, index, job)
    except ValueError as exc:
        raise fail(str(exc)) from exc
    report = done.report
    for path, error in done.predictions.failures:
        typer.echo(f"unreadable: {path}: {error}", err=True)
    typer.echo(
        f"{report.source} on {report.evaluated} photos of {len(report.classes)} species "
        f"({report.failed} unreadable): top-1 {report.top1:.3f}, top-5 {report.top5:.3f}, "
        f"macro-F1 {report.macro_f1:.3f}"
    )
    typer.echo(_calibration_line(report))
    for c in report.classes:
        flag = "" if c.in_model else "  (not among the model's classes)"
        typer.echo(
            f"  {c.name:<34} P {c.precision:.2f}  R {c.recall:.2f}  F1 {c.f1:.2f}  n {c.support}{flag}"
        )
    typer.echo("wrote " + ", ".join(str(p) for p in done.files.values()))


def _calibration_line(report: EvaluationReport) -> str:
    line = (
        f"calibration of the top-1 confidence ({len(report.reliability.bins)} equal-width bins): "
        f"ECE {report.ece:.3f}, MCE {report.mce:.3f}"
    )
    after = report.reliability_calibrated
    if after is not None:
        line += f"; {after.scores}: ECE {after.ece:.3f}, MCE {after.mce:.3f}"
    return line


def _with_model(config: Settings, name: str, job: _Job) -> Evaluated:
    from app.services.evaluation import evaluate_model

    with open_services(config, only=name, workers=job.workers) as (services, _):
        try:
            model = services.registry.get_ready(name, task="classifier")
        except ServiceError as exc:
            raise fail(exc.message) from exc
        with bar(len(job.paths), f"evaluating {name}", job.progress) as shown:
            return evaluate_model(
                services.identifier, model, job.paths, job.truths, job.out, dataset=job.dataset,
                top_k=job.top_k, workers=job.workers, on_progress=shown.update,
            )  # fmt: skip


def _with_index(config: Settings, folder: Path, job: _Job) -> Evaluated:
    from app.index.artifacts import IndexDir, IndexLoadError
    from app.services.evaluation import evaluate_index

    try:
        species_index = IndexDir(folder).load()
    except IndexLoadError as exc:
        raise fail(str(exc)) from exc
    name = species_index.manifest.embedder.name
    with open_services(config, only=name, workers=job.workers) as (services, _):
        try:
            embedder = services.registry.get_ready(name, task="embedder")
        except ServiceError as exc:
            raise fail(exc.message) from exc
        with bar(len(job.paths), f"evaluating {folder}", job.progress) as shown:
            return evaluate_index(
                services.lookup, species_index, embedder, job.paths, job.truths, job.out, folder,
                dataset=job.dataset, top_k=job.top_k, workers=job.workers, on_progress=shown.update,
            )  # fmt: skip
