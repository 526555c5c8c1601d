"""Batch throughput, side by side in one run on this machine: ``python -m app batch`` against the
bare limit of the same work, on the same photos.

    .venv/bin/python benchmarks/batch.py                          # needs ../shared (models, photos)
    .venv/bin/python benchmarks/batch.py --photos 12 --rounds 1 --no-ray

Two photo sets, each a folder source of ``--group-by photo`` observations (one photo each): real
photos (../shared samples + Leeds butterflies) and 12 MP JPEGs made from them (as serving.py
makes its own: 4000x3000, quality 90). The models are the shipped manifest's classifiers that
/v1/identify reads (birds + insects, ``features_tensor``, ``calibration``), written as the
benchmark's own manifest with absolute paths, as ``serving.py --identify`` does. Photos/s of:

  (a) the bare limit: per photo, read the file, decode it once at the draft scale of the largest
      input (``decode_for``), each distinct network once (``predict_with_features``), on a thread
      pool of the cores (and of the service's default worker count, when that differs; the limit
      is the faster): no answer built, nothing recorded;
  (b) batch local: the local engine (``answer_all``, app/batch/engine.py) over the source, each
      outcome committed to a real journal, which is what ``run_collection`` does once its models
      are loaded; PASS when (b)/(a) >= --min-local-ratio. Beside it, for the record,
      ``run_collection`` whole into a fresh DIR (model loading, journal, csv + jsonl outputs);
  (c) the Ray engine on one node (``answer_on_ray``, one actor per core, batches of 8), Ray
      started once before its runs (its start is printed, in no rate); per run, the set
      --ray-repeat times over, the actors' start (their processes, services and models) is
      reported apart from the steady rate: every photo over the time from the actors' mean
      ready time (Ray's actor table) to the last answer. PASS when (c)/(b) >= --min-ray-ratio;
      beside it the end-to-end rate of the call (actors' start included);
  (d) the resume bookkeeping: the engine committing each outcome to a journal (b) against the
      engine appending it to a list; PASS when journal/list >= --min-journal-ratio (the
      bookkeeping costs at most 5 %).

The local sides run in turns (a, b, d, run_collection, then the reverse order, ...: drift and
noise hit every side alike) for --rounds rounds after a warm-up, and the table gives each side's
median and the ratios of the medians. Core-hours per 10 million photos come from (b):
1e7 / rate / 3600 * cores. Exit status 1 when a goal fails, 2 without ../shared.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving import SHARED, real_photos, write_identify_manifest

GOALS = {"local": 0.9, "ray": 0.7, "journal": 0.95}
BIG_SOURCES = 6  # distinct 12 MP JPEGs; a larger --big-photos repeats them (the same bytes each time)


# --- photos ------------------------------------------------------------------------------------


def pick_real(n: int) -> list[Path]:
    """serving.py's real photos (the samples, then every 10th Leeds butterfly), then as many more
    Leeds photos, evenly spread, as ``n`` asks."""
    chosen = real_photos()
    if n > len(chosen):
        taken = set(chosen)
        rest = [p for p in sorted((SHARED / "datasets" / "leedsbutterfly" / "images").glob("*.jpg"))
                if p not in taken]  # fmt: skip
        wanted = min(n - len(chosen), len(rest))
        chosen += [rest[int(i)] for i in np.linspace(0, len(rest) - 1, wanted)] if wanted else []
    return chosen[:n]


def make_12mp(sources: Sequence[Path], folder: Path, count: int) -> None:
    """``count`` 12 MP JPEGs in ``folder``, made as serving.py makes its own (RGB, resized to
    4000x3000 bicubic, quality 90) from up to BIG_SOURCES of ``sources``, then copied round."""
    folder.mkdir(parents=True)
    made = []
    for i, source in enumerate(sources[-min(BIG_SOURCES, count) :]):
        target = folder / f"big{i:03d}.jpg"
        Image.open(source).convert("RGB").resize((4000, 3000), Image.Resampling.BICUBIC).save(
            target, "JPEG", quality=90
        )
        made.append(target)
    for i in range(len(made), count):
        shutil.copyfile(made[i % len(made)], folder / f"big{i:03d}.jpg")


def photo_folders(work: Path, n_real: int, n_big: int) -> dict[str, Path]:
    real = pick_real(n_real)
    folder = work / "real"
    folder.mkdir()
    for p in real:
        shutil.copyfile(p, folder / p.name)
    jpegs = [p for p in real if p.suffix.lower() in (".jpg", ".jpeg")]
    make_12mp(jpegs or real, work / "12mp", n_big)
    return {"real photos": folder, "12 MP JPEGs": work / "12mp"}


# --- the sides ---------------------------------------------------------------------------------


@dataclass
class Measured:
    rates: list[float] = field(default_factory=list)  # photos/s per round
    cpu_ms: list[float] = field(default_factory=list)  # this process's CPU ms per photo, per round
    extra: list[float] = field(default_factory=list)  # Ray: photos/s end to end, per round

    def median(self) -> float:
        return float(np.median(self.rates)) if self.rates else float("nan")


class Bare:
    """(a): read, decode once, each distinct network once; ``threads`` threads, nothing else."""

    def __init__(self, services: Any, asked: Any, paths: list[Path], threads: int) -> None:
        plan = services.identifier.plan(None, asked.groups, asked.steering)
        networks: dict[object, Any] = {}
        for model in plan.models:  # the models identify runs; one call per distinct network
            networks.setdefault(model.sha256 or model.name, model)
        self.models = list(networks.values())
        self.specs = {
            (m.input_spec.size, m.input_spec.dtype, m.input_spec.range): m.input_spec for m in self.models
        }
        self.keys = [(m.input_spec.size, m.input_spec.dtype, m.input_spec.range) for m in self.models]
        self.max_pixels = services.settings.images.max_pixels
        self.paths = paths
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="bare")

    def one(self, path: Path) -> None:
        from app.imaging.decode import decode_for

        decoded = decode_for(path.read_bytes(), list(self.specs.values()), max_pixels=self.max_pixels)
        pixels = {key: image.pixels for key, image in zip(self.specs, decoded, strict=True)}
        for model, key in zip(self.models, self.keys, strict=True):
            model.predict_with_features(pixels[key][np.newaxis])

    def run(self, paths: list[Path] | None = None) -> float:
        paths = self.paths if paths is None else paths
        started = time.perf_counter()
        list(self.pool.map(self.one, paths))
        return len(paths) / (time.perf_counter() - started)

    def close(self) -> None:
        self.pool.shutdown()


def engine_run(
    services: Any, loop: Any, pending: list[Any], asked: Any, record: Callable[..., None]
) -> float:
    from app.batch.engine import answer_all

    started = time.perf_counter()
    loop.run(answer_all(services, pending, asked, record))
    return len(pending) / (time.perf_counter() - started)


@dataclass
class Tally:
    """What the answers said: failures fail the benchmark; a place means a GBIF call (network)."""

    answers: int = 0
    failed: list[str] = field(default_factory=list)
    with_place: int = 0

    def add(self, answer: dict[str, Any] | None, error: str | None) -> None:
        self.answers += 1
        if answer is None:
            self.failed.append(error or "?")
        elif (answer.get("geo") or {}).get("status") not in (None, "not_requested", "off"):
            self.with_place += 1


def local_rounds(
    services: Any, loop: Any, config: Any, asked: Any, folder: Path, work: Path, rounds: int,
    bare_threads: list[int], tally: Tally,
) -> dict[str, Measured]:  # fmt: skip
    from app.batch.journal import Journal
    from app.batch.service import RunOptions, run_collection, run_options
    from app.batch.sources import read_source

    source = read_source(folder)
    pending = list(enumerate(source.observations))
    paths = [Path(obs.photos[0].location) for obs in source.observations]
    options = run_options(config, asked, source, "photo", 60.0)
    bares = {t: Bare(services, asked, paths, t) for t in bare_threads}
    runs = iter(range(10**6))

    def journal_side() -> float:
        journal = Journal.open(work / f"journal-{next(runs)}", source.fingerprint, options)

        def record(seq: int, observation: Any, answered: Any) -> None:
            journal.record(observation.id, seq, answered.answer, answered.error, answered.answered_at)
            tally.add(answered.answer, answered.error)

        try:
            return engine_run(services, loop, pending, asked, record)
        finally:
            journal.close()

    def list_side() -> float:
        kept: list[tuple[int, Any, Any]] = []

        def record(seq: int, observation: Any, answered: Any) -> None:
            kept.append((seq, observation, answered))

        rate = engine_run(services, loop, pending, asked, record)
        for _, _, answered in kept:
            tally.add(answered.answer, answered.error)
        return rate

    def whole_side() -> float:
        out = work / f"run-{next(runs)}"
        summary = run_collection(config, source, out, asked, options, RunOptions(progress=False))
        if summary.failed:
            tally.failed.append(f"run_collection: {summary.failed} failed (see {out})")
        return summary.observations / summary.seconds

    sides: dict[str, Callable[[], float]] = {f"bare {t}": bares[t].run for t in bare_threads}
    sides |= {"journal": journal_side, "list": list_side, "whole": whole_side}
    measured = {name: Measured() for name in sides}
    warm = pending[: max(4, len(pending) // 4)]
    for bare in bares.values():  # warm-up, not timed: threads, interpreters, the page cache
        bare.run(paths[: len(warm)])
    engine_run(services, loop, warm, asked, lambda *_: None)
    try:
        for i in range(rounds):
            for name in list(sides) if i % 2 == 0 else list(sides)[::-1]:
                cpu = time.process_time()
                measured[name].rates.append(sides[name]())
                measured[name].cpu_ms.append((time.process_time() - cpu) * 1000 / len(pending))
    finally:
        for bare in bares.values():
            bare.close()
    return measured


def actors_ready(since: float) -> list[float]:
    """When each ``AnswerBatches`` actor created since ``since`` (epoch seconds) came alive, that
    is, had opened its services and loaded its models: Ray's actor table (``StartTime``: the
    actor's constructor done), read through a private API; [] where it cannot be read."""
    try:
        from ray._private import state

        table = state.actors()
    except Exception:
        return []
    return sorted(
        info["StartTime"] / 1000
        for info in table.values()
        if "AnswerBatches" in str(info.get("ActorClassName", "")) and info.get("StartTime", 0) / 1000 >= since
    )


def ray_rounds(
    config: Any, asked: Any, folder: Path, work: Path, rounds: int, repeat: int, actors: int, tally: Tally
) -> tuple[Measured, list[str]]:
    """(c): per round, photos/s steady (rates) and end to end (extra); notes per round.

    Steady: every photo over the time from the actors' mean ready time to the last answer: with
    each actor busy from its own ready time to the end, that is the rate of ``actors`` actors at
    work. (The answers' arrival times alone cannot give it: Ray Data returns them a block at a
    time, an eighth of the run each, and hands over the last blocks together.)"""
    from app.batch.journal import Journal
    from app.batch.ray_engine import answer_on_ray
    from app.batch.service import run_options
    from app.batch.sources import read_source

    source = read_source(folder)
    pending = list(enumerate(source.observations * repeat))
    options = run_options(config, asked, source, "photo", 60.0)
    measured = Measured()
    notes = []
    for i in range(rounds):
        journal = Journal.open(work / f"ray-{i}", source.fingerprint, options)
        arrivals: list[float] = []

        def record(
            seq: int,
            observation: Any,
            answered: Any,
            journal: Journal = journal,
            arrivals: list[float] = arrivals,
        ) -> None:
            journal.record(observation.id, seq, answered.answer, answered.error, answered.answered_at)
            arrivals.append(time.time())
            tally.add(answered.answer, answered.error)

        started = time.time()
        try:
            answer_on_ray(config, pending, asked, record, actors=actors)
        finally:
            journal.close()
        total = time.time() - started
        ready = actors_ready(started)
        if len(ready) == actors:
            steady = len(pending) / (arrivals[-1] - float(np.mean(ready)))
            how = (
                f"actors ready after {ready[0] - started:.1f}-{ready[-1] - started:.1f} s (process start, "
                f"services and models loaded), first answer after {arrivals[0] - started:.1f} s; steady: "
                f"{len(pending)} photos from the actors' mean ready time to the last answer"
            )
        else:  # no actor table: from the first answer to the last (an eighth of the run too fast)
            first_block = sum(t - arrivals[0] < 0.002 for t in arrivals)  # recorded in one go
            steady = (len(arrivals) - first_block) / (arrivals[-1] - arrivals[0])
            how = (
                f"{len(ready)} of {actors} actors' ready times read; first answer after "
                f"{arrivals[0] - started:.1f} s; steady: from the first answer to the last"
            )
        measured.rates.append(steady)
        measured.extra.append(len(pending) / total)
        notes.append(f"round {i + 1}: {len(pending)} photos in {total:.1f} s; {how}: {steady:.1f} photos/s")
    return measured, notes


# --- the report --------------------------------------------------------------------------------


def verdict(ratio: float, goal: float) -> str:
    return "PASS" if ratio >= goal else "FAIL"


def report(
    set_name: str, count: int, local: dict[str, Measured], ray: tuple[Measured, list[str]] | None,
    goals: dict[str, float], cores: int, workers: int,
) -> bool:  # fmt: skip
    """Prints one set's table; True when every goal it measured passes."""
    bare_names = [n for n in local if n.startswith("bare ")]
    best = max(bare_names, key=lambda n: local[n].median())
    limit = local[best].median()
    journal, kept = local["journal"].median(), local["list"].median()

    def row(label: str, m: Measured, note: str = "") -> None:
        rounds = " ".join(f"{r:.1f}" for r in m.rates)
        cpu = f"{np.median(m.cpu_ms):6.1f}" if m.cpu_ms else ""
        print(f"  {label:<58} {m.median():8.1f} {cpu:>6}   {rounds}{note}")

    def paired(a: Measured, b: Measured) -> str:
        """The median of the rounds' own ratios (each round's two runs are close in time)."""
        return f"{np.median(np.array(a.rates) / np.array(b.rates)):.3f}"

    print(f"\n{set_name}: {count} photos, one observation each")
    print(f"  {'side':<58} {'photos/s':>8} {'CPU ms':>6}   photos/s per round")
    for name in bare_names:
        threads = int(name.split()[1])
        mark = "  <- the limit" if name == best and len(bare_names) > 1 else ""
        row(f"(a) bare limit: read + decode + each network, {threads} threads", local[name], mark)
    row(f"(b) batch local: answer_all + journal ({workers} workers)", local["journal"])
    row("(d) answer_all, outcomes to a list (no journal)", local["list"])
    row("    run_collection whole (model loading, journal, outputs)", local["whole"])
    if ray is not None:
        row(f"(c) Ray, {cores} actors: steady (actors ready to the last answer)", ray[0])
        row("    Ray end to end (actors' start + every batch)", Measured(ray[0].extra))
    ok = True
    cpu = {name: float(np.median(m.cpu_ms)) for name, m in local.items()}
    ratios = [
        ("(b)/(a)  local / bare limit", journal / limit, goals["local"],
         f"rounds' median {paired(local['journal'], local[best])}; "
         f"CPU ms/photo {cpu['journal']:.1f} vs {cpu[best]:.1f}"),
    ]  # fmt: skip
    if ray is not None:
        ratios.append(("(c)/(b)  Ray steady / local", ray[0].median() / journal, goals["ray"], ""))
    ratios.append(
        ("(d)      journal / list", journal / kept, goals["journal"],
         f"rounds' median {paired(local['journal'], local['list'])}; the bookkeeping costs "
         f"{1 - journal / kept:.1%} of the rate, {cpu['journal'] - cpu['list']:+.2f} CPU ms/photo"),
    )  # fmt: skip
    for label, ratio, goal, extra in ratios:
        ok &= ratio >= goal
        print(f"  ratio {label:<30} {ratio:6.3f}  {verdict(ratio, goal)} (>= {goal})  {extra}")
    if ray is not None:
        for note in ray[1]:
            print(f"    Ray {note}")
    hours = 1e7 / journal / 3600 * cores
    print(f"  core-hours per 10 million photos (local, {journal:.1f} photos/s on {cores} cores): {hours:.0f}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--photos", type=int, default=48, help="real photos (../shared samples + Leeds)")
    parser.add_argument("--big-photos", type=int, default=24, help="12 MP JPEGs (at most 6 distinct)")
    parser.add_argument("--rounds", type=int, default=3, help="local sides: runs per side, in turns")
    parser.add_argument("--ray", action=argparse.BooleanOptionalAction, default=True, help="measure (c)")
    parser.add_argument(
        "--ray-rounds", type=int, default=1, help="(c): runs per photo set (each starts actors)"
    )
    parser.add_argument("--ray-repeat", type=int, default=4, help="(c): the set this many times over per run")
    parser.add_argument(
        "--geo",
        choices=("prior", "off", "filter"),
        default="prior",
        help="Steering.geo (prior: GBIF, for GPS)",
    )
    parser.add_argument(
        "--min-local-ratio", type=float, default=GOALS["local"], help="(b)/(a): PASS at or above"
    )
    parser.add_argument("--min-ray-ratio", type=float, default=GOALS["ray"], help="(c)/(b): PASS at or above")
    parser.add_argument("--min-journal-ratio", type=float, default=GOALS["journal"],
                        help="(d) journal/list: PASS at or above")  # fmt: skip
    args = parser.parse_args()
    if (
        not (SHARED / "models" / "aiy_birds_v1" / "model.tflite").exists()
        or not (SHARED / "samples").is_dir()
    ):
        print(f"{SHARED} not found: this benchmark needs ../shared (real models and photos)", file=sys.stderr)
        return 2
    started_all = time.monotonic()
    cores = os.cpu_count() or 1
    goals = {"local": args.min_local_ratio, "ray": args.min_ray_ratio, "journal": args.min_journal_ratio}
    work = Path(tempfile.mkdtemp(prefix="species-bench-batch-"))
    manifest = work / "models.toml"
    entries = write_identify_manifest(manifest)
    os.environ.update(
        {"MODELS_MANIFEST": str(manifest), "GBIF_CACHE_PATH": str(work / "gbif.sqlite"),
         "INDEX_DIR": str(work / "index")}
    )  # fmt: skip
    folders = photo_folders(work, args.photos, args.big_photos)

    from app.batch.answering import Asked
    from app.identification.request import Steering
    from app.settings import Settings
    from app.wiring import running_services

    config = Settings()
    workers = config.admission.inference_workers  # what `batch` runs with by default
    asked = Asked(Steering(geo=args.geo))
    bare_threads = sorted({cores, workers})
    counts = {name: len(list(folder.iterdir())) for name, folder in folders.items()}
    print(f"{cores} cores; batch's default {workers} inference workers; models: "
          + ", ".join(str(e["name"]) for e in entries) + f" ({manifest})")  # fmt: skip
    print(
        "photos: "
        + ", ".join(f"{n} {name}" for name, n in counts.items())
        + f"; work in {work} (removed at the end)"
    )
    print(f"load average {os.getloadavg()[0]:.1f} at the start (other work on these cores moves every rate; "
          "CPU ms/photo, this process's CPU time per photo, moves less)")  # fmt: skip
    tally = Tally()
    local: dict[str, dict[str, Measured]] = {}
    opened = time.perf_counter()
    with running_services(config, index=False) as (services, loop):
        print(f"models loaded in {time.perf_counter() - opened:.2f} s (not in any rate but run_collection's)")
        for name, folder in folders.items():
            local[name] = local_rounds(
                services, loop, config, asked, folder, work / name.replace(" ", "-"), args.rounds,
                bare_threads, tally,
            )  # fmt: skip
    ray: dict[str, tuple[Measured, list[str]]] = {}
    if args.ray:
        import ray as ray_module

        started = time.perf_counter()
        ray_module.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
        print(f"Ray started in {time.perf_counter() - started:.1f} s (once, before its runs; in no rate)")
        try:
            for name, folder in folders.items():
                ray[name] = ray_rounds(
                    config, asked, folder, work / f"ray-{name.replace(' ', '-')}", args.ray_rounds,
                    args.ray_repeat, cores, tally,
                )  # fmt: skip
        finally:
            ray_module.shutdown()

    print(f"\nlocal sides: {args.rounds} round(s) in turns after a warm-up; medians over the rounds")
    ok = True
    for name in folders:
        ok &= report(name, counts[name], local[name], ray.get(name), goals, cores, workers)
    print(f"\n{tally.answers} answers checked, {len(tally.failed)} failed; {tally.with_place} with a place "
          "(the GBIF prior asked: network, in none of the limits)")  # fmt: skip
    if tally.failed:
        ok = False
        print("FAIL: answers failed: " + "; ".join(sorted(set(tally.failed))[:5]))
    print("PASS: every goal met" if ok else "FAIL: a goal missed, or answers failed")
    print(f"took {time.monotonic() - started_all:.0f} s; load average {os.getloadavg()[0]:.1f} at the end")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
