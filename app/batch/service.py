"""``run_collection``: a source's observations through an engine into the journal, then the
outputs from the journal. The command (``app.cli.batch``) maps its options onto this and prints
the summary; nothing else is decided there.

A rerun with the same source, options and DIR answers only what the journal does not hold
(``--retry-failed``: also what failed); the outputs are rewritten whole from the journal, so a
resumed run ends with what one uninterrupted run would have written.
"""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.batch.answering import Answered, Asked
from app.batch.collection import Observation, Outcome
from app.batch.journal import Journal, JournalError
from app.batch.sources import Source
from app.errors import ServiceError
from app.identification.request import Defaults
from app.settings import Settings
from app.wiring import Services

Format = Literal["csv", "jsonl", "camtrap-dp", "dwca"]
FORMATS: tuple[Format, ...] = ("csv", "jsonl", "camtrap-dp", "dwca")
Engine = Literal["local", "ray"]


@dataclass(frozen=True)
class RunOptions:
    """How to run, none of which changes an answer (so a resume may change them)."""

    formats: tuple[Format, ...] = ("csv", "jsonl")
    engine: Engine = "local"
    retry_failed: bool = False
    workers: int | None = None  # local: inference threads; ray: actors (default: cores)
    progress: bool = True
    ray_address: str | None = None


@dataclass
class Summary:
    observations: int  # in the source
    answered_now: int  # by this run (the rest were in the journal)
    done: int
    failed: int
    no_match: Counter[str] = field(default_factory=Counter)  # reason -> observations
    models: Counter[str] = field(default_factory=Counter)  # the model that answered -> observations
    seconds: float = 0.0
    outputs: list[Path] = field(default_factory=list)
    not_written: dict[str, str] = field(default_factory=dict)  # format -> why (the others are written)


class BatchError(Exception):
    """The run cannot go on, or its outputs cannot be written: the message says why and what to
    do; what the journal holds is kept (a rerun resumes from it)."""


def run_options(
    config: Settings, asked: Asked, source: Source, group_by: str, event_gap: float
) -> dict[str, object]:
    """What changes the answers: a journal made with other values is refused. The thresholds as
    they apply (the settings' when no option gives one) and the models' versions count too."""
    listed = asked.steering.species_list
    names = sorted(listed.names) if listed is not None else None
    steering, ranking = asked.steering, config.ranking
    return {
        "group_by": group_by,
        "event_gap": event_gap if source.kind == "camtrap-dp" and group_by == "event" else None,
        "groups": sorted(asked.groups) if asked.groups else None,
        "taxon": steering.taxon,
        "species_list": hashlib.sha256("\n".join(names).encode()).hexdigest() if names is not None else None,
        "geo": steering.geo,
        "min_score": steering.min_score if steering.min_score is not None else ranking.min_score,
        "rollup_threshold": (
            steering.rollup_threshold if steering.rollup_threshold is not None else ranking.rollup_threshold
        ),
        "top_k": asked.top_k,
        "defaults": _defaults(asked.defaults),
        "use_photo_metadata": asked.use_photo_metadata,
        "models": _model_versions(config),
    }


def _defaults(defaults: Defaults | None) -> list[object] | None:
    if defaults is None:
        return None
    place = defaults.place
    return [place.lat if place else None, place.lon if place else None, str(defaults.date)]


def run_collection(
    config: Settings, source: Source, out: Path, asked: Asked, options: dict[str, object], how: RunOptions
) -> Summary:
    """The whole run: the options checked against the models (an unknown group or taxon stops
    it before anything is recorded), the journal opened, the pending observations answered, the
    outputs written. Raises ``BatchError`` with the reason."""
    started = time.perf_counter()
    with ExitStack() as stack:
        services = None
        if how.engine == "local":
            services = stack.enter_context(_opened(config, how.workers))
            _check(services[0], asked, source)
        else:
            with _opened(config, 1) as (checking, _):  # the models here, only to check the options
                _check(checking, asked, source)
        try:
            journal = stack.enter_context(closing(Journal.open(out, source.fingerprint, options)))
        except JournalError as exc:
            raise BatchError(str(exc)) from exc
        answered_now = _answer(config, source, asked, journal, how, services)
        summary = _summarise(journal, source, answered_now)
        try:
            summary.outputs, summary.not_written = write_outputs(journal, source, out, how.formats, config)
        except (OSError, UnicodeError, sqlite3.Error) as exc:
            raise BatchError(
                f"cannot write the outputs in {out}: {exc} (the answers are in its journal: run the same "
                "command again to write them)"
            ) from exc
    summary.seconds = time.perf_counter() - started
    return summary


@contextmanager
def _opened(config: Settings, workers: int | None) -> Iterator[tuple[Services, asyncio.Runner]]:
    from app.wiring import running_services

    try:
        with running_services(config, workers=workers, index=False) as opened:
            yield opened
    except ServiceError as exc:  # a manifest that cannot be read
        raise BatchError(exc.message) from exc


def _check(services: Services, asked: Asked, source: Source) -> None:
    """The models, groups, taxa (the command's and every CSV row's) and species list that the
    answers need, checked once: a typo is one message, not a million failed observations."""
    from dataclasses import replace

    taxa = {asked.steering.taxon} | {o.taxon for o in source.observations if o.taxon is not None}
    for taxon in sorted(taxa, key=str):
        try:
            services.identifier.plan(groups=asked.groups, steering=replace(asked.steering, taxon=taxon))
        except ServiceError as exc:
            raise BatchError(exc.message) from exc


def _answer(
    config: Settings,
    source: Source,
    asked: Asked,
    journal: Journal,
    how: RunOptions,
    services: tuple[Services, asyncio.Runner] | None,
) -> int:
    """The observations the journal does not hold (and the failed ones, with --retry-failed),
    each committed as it is answered; returns how many."""
    statuses = journal.statuses()
    redo = {"failed"} if how.retry_failed else set()
    pending = [
        (seq, obs)
        for seq, obs in enumerate(source.observations)
        if obs.id not in statuses or statuses[obs.id] in redo
    ]
    answered_now = 0
    bar = _bar(len(source.observations), len(source.observations) - len(pending), how.progress)

    def record(seq: int, observation: Observation, answered: Answered) -> None:
        nonlocal answered_now
        journal.record(observation.id, seq, answered.answer, answered.error, answered.answered_at)
        answered_now += 1
        bar.update(1)

    try:
        if not pending:
            return 0
        if services is not None:
            from app.batch.engine import answer_all

            services[1].run(answer_all(services[0], pending, asked, record))
        else:
            from app.batch.ray_engine import answer_on_ray

            answer_on_ray(config, pending, asked, record, actors=how.workers, address=how.ray_address)
    except sqlite3.Error as exc:
        raise BatchError(
            f"the journal could not be written ({exc}: is the disk full?); what it holds is kept: "
            "run the same command again to go on"
        ) from exc
    except Exception as exc:  # the engine itself (a Ray cluster lost, a worker killed)
        raise BatchError(
            f"the {how.engine} engine stopped: {type(exc).__name__}: {exc}; the {answered_now} answers "
            "of this run are in the journal: run the same command again to go on"
        ) from exc
    finally:
        bar.close()
    return answered_now


def _bar(total: int, done: int, shown: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=done, unit="obs", desc="identifying", disable=not shown, smoothing=0.1)


def outcomes(journal: Journal, source: Source) -> Iterator[Outcome]:
    """The journal's outcomes with their observations, in the source's order."""
    by_id = {obs.id: obs for obs in source.observations}
    for entry in journal.entries():
        observation = by_id.get(entry.id)
        if observation is not None:
            yield Outcome(observation, entry.answer, entry.error, entry.answered_at)


def _summarise(journal: Journal, source: Source, answered_now: int) -> Summary:
    summary = Summary(len(source.observations), answered_now, 0, 0)
    for outcome in outcomes(journal, source):
        answer = outcome.answer
        if answer is None:
            summary.failed += 1
            continue
        summary.done += 1
        if answer.get("no_match_reason"):
            summary.no_match[answer["no_match_reason"]] += 1
        if answer.get("model"):
            summary.models[answer["model"]] += 1
    return summary


def write_outputs(
    journal: Journal, source: Source, out: Path, formats: tuple[Format, ...], config: Settings
) -> tuple[list[Path], dict[str, str]]:
    """Each format asked, from the journal; one that cannot be written (a Camtrap DP package
    with no place to make a deployment of) is said, and the others are written all the same."""
    from app.batch.outputs.tables import write_answers, write_predictions

    written: list[Path] = []
    failed: dict[str, str] = {}
    if "csv" in formats:
        written.append(write_predictions(outcomes(journal, source), out / "predictions.csv"))
    if "jsonl" in formats:
        written.append(write_answers(outcomes(journal, source), out / "answers.jsonl"))
    if "camtrap-dp" in formats or "dwca" in formats:
        everything = list(outcomes(journal, source))
        models = _model_versions(config)
        # The newest answer's time, not the clock: a resumed run writes what one run would have.
        created = max((o.answered_at for o in everything), default="1970-01-01T00:00:00Z")
        if "camtrap-dp" in formats:
            from app.batch.outputs.camtrap_dp import CamtrapDpError, write_camtrap_dp

            try:
                written.append(
                    write_camtrap_dp(
                        everything, out / "camtrap-dp", package=source.package, models=models, created=created
                    )
                )
            except CamtrapDpError as exc:
                failed["camtrap-dp"] = str(exc)
        if "dwca" in formats:
            from app.batch.outputs.darwin_core import write_dwca

            title = f"Machine identifications of {source.path.name}"
            written.append(
                write_dwca(everything, out / "dwca.zip", models=models, created=created, title=title)
            )
    return written, failed


def _model_versions(config: Settings) -> dict[str, str]:
    from app.models.registry import read_manifests

    manifest = read_manifests(config.models, None)
    return {spec.name: spec.version or "" for spec in manifest.models if spec.task == "classifier"}
