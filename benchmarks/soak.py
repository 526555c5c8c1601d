"""Soak test: the real service under a steady mixed load for minutes, per minute errors, latency, RSS.

    .venv/bin/python benchmarks/soak.py                 # 10 minutes at 80 % of capacity; needs ../shared
    .venv/bin/python benchmarks/soak.py --minutes 1     # a quick look

One server (uvicorn, ``app.main:app``) with the shipped manifest's AIY birds and insects classifiers
and the ``aiy_insects_features`` embedder (files from ../shared/models), a small species index built
first with the real CLI (``python -m app build-index`` over the first ``--index-photos`` Leeds photos
of each species, into a temporary INDEX_DIR), the fake GBIF of tests/fakes as GBIF_API_URL, and a
local photo host on loopback (ALLOW_PRIVATE_NETWORKS, as benchmarks/serving.py runs it). Photos:
the real ones of benchmarks/serving.py (../shared samples + every 10th Leeds photo) and its six
12 MP JPEGs (phone size); every Leeds photo for the lookups. The requests, drawn with ``--seed``:

    upload  multipart to /bird_url, /insect_url, /v1/classify/aiy_birds_v1 or .../aiy_insects_v1
    url     the same routes with ?img_url= on the local photo host
    lookup  /img_url, a Leeds photo, by upload or by URL
    gbif    GET /query_gbif?name= a species of the two label maps (the cache fills as it goes)

First the capacity: a closed loop at ``--concurrency`` for ``--capacity-seconds`` with the same mix
(requests/s). Then an open loop for ``--minutes``: arrivals at a fixed rate, ``--load-fraction`` x
capacity, each sent when due on an idle keep-alive connection (a new one when none is idle), so a
slow answer delays no later arrival; latency counts from when the request was due. Every minute
(``--interval`` seconds) a row: requests answered, errors by status, p50/p99 (overall and per kind),
the server's CPU (share of all cores) and RSS (VmRSS of the server process and its children, e.g.
``--workers 2``). At the end the totals, the errors by status (with the first answers' bodies), the
RSS growth from the end of the first minute to the end, and a verdict: PASS with no errors and RSS
growth under ``--max-rss-growth`` % (exit status 1 otherwise). The load generator shares the cores
with the server, during the capacity run and the soak alike.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import itertools
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import serving
from benchmarks.serving import (
    REPO,
    SHARED,
    SHIPPED_MANIFEST,
    Server,
    cpu_s,
    photo_sets,
    request_bytes,
    service_env,
    static_server,
    toml_value,
)
from tests.fakes.gbif import FakeGbif
from tests.support.reference import leeds

KINDS = ("upload", "url", "lookup", "gbif")
CLASSIFY_ROUTES = ("/bird_url", "/insect_url", "/v1/classify/aiy_birds_v1", "/v1/classify/aiy_insects_v1")
EMBEDDER = "aiy_insects_features"
REQUEST_TIMEOUT_S = 60.0  # client side; the service answers 503 deadline_exceeded after 30 s itself


# ---------------------------------------------------------------- set-up: manifest, index, server


def write_manifest(path: Path) -> list[str]:
    """The classifiers benchmarks/serving.py's ``--identify`` serves (the shipped manifest's, with
    absolute paths) plus the shipped ``aiy_insects_features`` embedder; returns the model names."""
    entries = serving.write_identify_manifest(path)
    shipped = tomllib.loads(SHIPPED_MANIFEST.read_text(encoding="utf-8"))["models"]
    embedder = dict(next(e for e in shipped if e["name"] == EMBEDDER))
    embedder["file"] = str(SHARED / "models" / embedder["file"])
    with path.open("a", encoding="utf-8") as fh:
        fh.write("[[models]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in embedder.items()))
    return [str(e["name"]) for e in entries] + [EMBEDDER]


def build_index(work: Path, manifest: Path, per_species: int) -> tuple[str, float]:
    """The first ``per_species`` Leeds photos of each species, indexed with the real CLI."""
    rows: dict[str, list[Path]] = {}
    for image, name in leeds(SHARED):
        rows.setdefault(name, []).append(image)
    listing = work / "index-photos.csv"
    with listing.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        for name, images in rows.items():
            writer.writerows([str(p), name] for p in images[:per_species])
    started = time.monotonic()
    out = subprocess.run(
        [sys.executable, "-m", "app", "build-index", str(listing), "--out", str(work / "index"),
         "--embedder", EMBEDDER, "--no-progress"],
        cwd=REPO, env={**os.environ, "MODELS_MANIFEST": str(manifest)}, capture_output=True, text=True,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"build-index failed:\n{out.stdout}\n{out.stderr}")
    return out.stdout.strip().splitlines()[-1], time.monotonic() - started


def gbif_names() -> list[str]:
    """'Genus species' names of the two classifiers' label maps (the fake answers them 200)."""
    names = set()
    for model in ("aiy_birds_v1", "aiy_insects_v1"):
        with (SHARED / "models" / model / "labelmap.csv").open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                words = row["name"].split()
                if len(words) == 2 and words[0].isalpha() and words[1].isalpha() and words[0][0].isupper():
                    names.add(row["name"])
    return sorted(names)


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (uvicorn ``--workers`` children), from /proc."""
    parents: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        p = todo.pop()
        tree.append(p)
        todo += parents.get(p, [])
    return tree


def tree_rss_mib(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):  # exited meanwhile
            total += serving.rss_mib(p)
    return total


def machine_cpu_s() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, every core (/proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    ticks = os.sysconf("SC_CLK_TCK")
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / ticks, sum(fields[:8]) / ticks


def tree_cpu_s(pid: int) -> float:
    total = 0.0
    for p in process_tree(pid):
        with contextlib.suppress(OSError):
            total += cpu_s(p)
    return total


# ---------------------------------------------------------------- the requests


def get_bytes(port: int, target: str) -> bytes:
    return f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n\r\n".encode()


@dataclass
class Mix:
    """Draws request i (reproducibly: request i depends only on the seed and i)."""

    port: int
    photos: list[Path]  # classified: real photos and 12 MP JPEGs
    lookups: list[Path]  # Leeds photos for /img_url
    names: list[str]
    photo_url: str
    weights: dict[str, float]
    seed: int
    _cache: dict[tuple[str, str, str], bytes] = field(default_factory=dict)

    def __call__(self, i: int) -> tuple[str, str, bytes]:
        rng = random.Random(self.seed * 1_000_003 + i)
        kind = rng.choices(list(self.weights), list(self.weights.values()))[0]
        if kind == "gbif":
            name = rng.choice(self.names)
            query = httpx.QueryParams({"name": name})
            return kind, "/query_gbif", get_bytes(self.port, f"/query_gbif?{query}")
        if kind == "lookup":
            route, photo, by_url = "/img_url", rng.choice(self.lookups), rng.random() < 0.5
        else:
            route, photo, by_url = rng.choice(CLASSIFY_ROUTES), rng.choice(self.photos), kind == "url"
        key = (route, photo.name, "url" if by_url else "upload")
        if key not in self._cache:
            payload: bytes | str = f"{self.photo_url}/{photo.name}" if by_url else photo.read_bytes()
            self._cache[key] = request_bytes(self.port, route, photo.name, payload)
        return kind, route, self._cache[key]


async def exchange_body(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        request: bytes) -> tuple[int, bytes, bool]:  # fmt: skip
    """serving.exchange, keeping the body (for the error report) and whether the server closes."""
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length, close = 0, False
    for line in head.split(b"\r\n"):
        lower = line.lower()
        if lower.startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
        elif lower.startswith(b"connection:") and b"close" in lower:
            close = True
    return status, await reader.readexactly(length), close


@dataclass
class Record:
    kind: str
    route: str
    status: int | str  # an HTTP status, or the client-side exception's name
    ms: float


@dataclass
class Recorder:
    """Answers as they complete, per row; a few error bodies kept for the report."""

    rows: list[list[Record]] = field(default_factory=lambda: [[]])
    error_samples: list[str] = field(default_factory=list)

    def add(self, record: Record, body: bytes = b"") -> None:
        self.rows[-1].append(record)
        if record.status != 200 and len(self.error_samples) < 10:
            self.error_samples.append(
                f"{record.status} {record.kind} {record.route} after {record.ms:.0f} ms: "
                + body[:300].decode(errors="replace")
            )


class Connections:
    """Idle keep-alive connections to the server; a new one when none is idle. A connection idle
    for ``REUSE_S`` is closed rather than reused: uvicorn closes one idle for 5 s
    (``--timeout-keep-alive``), and a request written as it does so reads nothing back (an
    HTTP client's race with the server, not an answer of the service)."""

    REUSE_S = 2.0

    def __init__(self, port: int) -> None:
        self.port = port
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened = 0

    async def _get(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()  # the most recently used first
            if now - since < self.REUSE_S and not reader.at_eof():
                return reader, writer
            writer.close()
        self.opened += 1
        return await asyncio.open_connection("127.0.0.1", self.port, limit=2**24)

    async def send(self, request: bytes) -> tuple[int | str, bytes]:
        conn = None
        try:
            conn = await self._get()
            status, body, close = await asyncio.wait_for(exchange_body(*conn, request), REQUEST_TIMEOUT_S)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                ValueError, IndexError) as exc:  # fmt: skip
            if conn is not None:
                conn[1].close()
            return type(exc).__name__, str(exc).encode()
        if close:
            conn[1].close()
        else:
            self.idle.append((*conn, time.monotonic()))
        return status, body

    def close(self) -> None:
        for _, writer, _ in self.idle:
            writer.close()
        self.idle.clear()


async def warm_up(port: int, mix: Mix) -> Counter[int | str]:
    """Each route, upload and URL, once (the index loads on the first /img_url), not timed."""
    conns = Connections(port)
    statuses: Counter[int | str] = Counter()
    seen: set[tuple[str, str]] = set()
    for i in itertools.count():
        kind, route, request = mix(-1 - i)
        if (kind, route) in seen:
            if len(seen) >= len(CLASSIFY_ROUTES) * 2 + 2 or i > 500:
                break
            continue
        seen.add((kind, route))
        statuses[(await conns.send(request))[0]] += 1
    conns.close()
    return statuses


async def closed_loop(port: int, mix: Mix, concurrency: int, seconds: float, first: int) -> tuple:
    """``concurrency`` connections, each sending its next request when the last one is answered,
    for ``seconds``; (requests/s, recorder, the load generator's CPU share)."""
    recorder = Recorder()
    counter = itertools.count(first)
    loop = asyncio.get_running_loop()
    end = loop.time() + seconds

    async def worker() -> None:
        conns = Connections(port)
        while loop.time() < end:
            kind, route, request = mix(next(counter))
            started = loop.time()
            status, body = await conns.send(request)
            recorder.add(Record(kind, route, status, (loop.time() - started) * 1000), body)
        conns.close()

    started, cpu = loop.time(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = loop.time() - started
    share = (time.process_time() - cpu) / (elapsed * (os.cpu_count() or 1))
    return len(recorder.rows[-1]) / elapsed, recorder, share


# ---------------------------------------------------------------- the soak


@dataclass
class Row:
    label: str
    offered: int
    records: list[Record]
    seconds: float
    server_cpu: float  # share of all cores
    machine_cpu: float  # share of all cores busy, anything on the machine (the server included)
    rss: float  # MiB at the row's end
    lag_ms: float  # the scheduler's worst lateness in the row


def percentiles(records: list[Record], kind: str | None = None) -> tuple[float, float]:
    ms = [r.ms for r in records if r.status == 200 and (kind is None or r.kind == kind)]
    if not ms:
        return float("nan"), float("nan")
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def errors_of(records: list[Record]) -> Counter[int | str]:
    return Counter(r.status for r in records if r.status != 200)


def show_errors(errors: Counter[int | str]) -> str:
    return " ".join(f"{k}:{n}" for k, n in sorted(errors.items(), key=str)) or "0"


HEADER = (
    f"{'minute':>6} | {'offered':>7} {'done':>6} {'req/s':>6} | {'errors':<12} | {'p50':>5} {'p99':>6} | "
    + " | ".join(f"{k + ' p50/p99':>15}" for k in KINDS)
    + f" | {'CPU':>4} {'host':>4} | {'RSS MiB':>7} | lag ms"
)


def row_label(end_s: float, interval: float) -> str:
    """The row's end: its minute with one-minute rows, else seconds."""
    return f"{end_s / 60:.3g}" if interval == 60 else f"{end_s:.0f}s"


def format_row(row: Row) -> str:
    p50, p99 = percentiles(row.records)
    kinds = " | ".join(
        f"{f'{a:.0f} / {b:.0f}':>15}" for a, b in (percentiles(row.records, k) for k in KINDS)
    )  # fmt: skip
    return (
        f"{row.label:>6} | {row.offered:7d} {len(row.records):6d} {len(row.records) / row.seconds:6.1f} | "
        f"{show_errors(errors_of(row.records)):<12} | {p50:5.0f} {p99:6.0f} | {kinds} | "
        f"{row.server_cpu:4.0%} {row.machine_cpu:4.0%} | {row.rss:7.1f} | {row.lag_ms:6.0f}"
    )


Samples = list[tuple[float, float]]  # (seconds since the start, RSS MiB)


async def open_loop(port: int, mix: Mix, rate: float, seconds: float, interval: float, pid: int,
                    first: int, sample_s: float = 5.0) -> tuple[list[Row], Samples, dict]:  # fmt: skip
    """Arrivals every 1/rate s for ``seconds``; a row per ``interval``; RSS sampled every
    ``sample_s``. Returns the rows, the RSS samples (s, MiB) and a few totals."""
    loop = asyncio.get_running_loop()
    conns = Connections(port)
    recorder = Recorder()
    start = loop.time()
    end = start + seconds
    offered = [0]
    lag = [0.0]
    rows: list[Row] = []
    samples: list[tuple[float, float]] = [(0.0, tree_rss_mib(pid))]
    in_flight: set[asyncio.Task[None]] = set()
    peak_in_flight = 0
    cpu_before = [tree_cpu_s(pid), loop.time(), *machine_cpu_s()]
    generator_cpu = time.process_time()

    async def one(i: int, due: float) -> None:
        kind, route, request = mix(i)
        status, body = await conns.send(request)
        recorder.add(Record(kind, route, status, (loop.time() - due) * 1000), body)

    def close_row(label: str) -> None:
        now, cpu = loop.time(), tree_cpu_s(pid)
        rss = tree_rss_mib(pid)
        samples.append((now - start, rss))
        busy, ticks = machine_cpu_s()
        share = (cpu - cpu_before[0]) / ((now - cpu_before[1]) * (os.cpu_count() or 1))
        machine = (busy - cpu_before[2]) / max(ticks - cpu_before[3], 1e-9)
        rows.append(
            Row(label, offered[0], recorder.rows[-1], now - cpu_before[1], share, machine, rss, lag[0])
        )
        print(format_row(rows[-1]), flush=True)
        cpu_before[:] = [cpu, now, busy, ticks]
        recorder.rows.append([])
        offered[0], lag[0] = 0, 0.0

    async def reporter() -> None:
        n_rows = max(1, int(np.ceil(seconds / interval - 1e-9)))
        next_sample = start + sample_s
        for k in range(1, n_rows):
            boundary = start + k * interval
            while next_sample < boundary:
                await asyncio.sleep(max(0.0, next_sample - loop.time()))
                samples.append((loop.time() - start, tree_rss_mib(pid)))
                next_sample += sample_s
            await asyncio.sleep(max(0.0, boundary - loop.time()))
            close_row(row_label(k * interval, interval))
        while next_sample < end:
            await asyncio.sleep(max(0.0, next_sample - loop.time()))
            samples.append((loop.time() - start, tree_rss_mib(pid)))
            next_sample += sample_s

    print(HEADER, flush=True)
    report = asyncio.create_task(reporter())
    for i in itertools.count():
        due = start + i / rate
        if due >= end:
            break
        if due > loop.time():
            await asyncio.sleep(due - loop.time())
        lag[0] = max(lag[0], (loop.time() - due) * 1000)
        task = asyncio.create_task(one(first + i, due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
        peak_in_flight = max(peak_in_flight, len(in_flight))
        offered[0] += 1
    await report
    if in_flight:  # the last arrivals' answers belong to the last row
        await asyncio.wait(in_flight, timeout=REQUEST_TIMEOUT_S + 5)
    close_row(row_label(seconds, interval))
    conns.close()
    totals = {
        "elapsed": loop.time() - start,
        "generator_share": (time.process_time() - generator_cpu)
        / ((loop.time() - start) * (os.cpu_count() or 1)),
        "peak_in_flight": peak_in_flight,
        "connections": conns.opened,
        "error_samples": recorder.error_samples,
        "unfinished": len(in_flight),
    }
    return rows, samples, totals


def rss_trend(samples: Samples, after_s: float) -> tuple[float, float, float]:
    """Over the samples after ``after_s``: the least-squares slope (MiB/min), and the growth of the
    first and the second half of that span (MiB): a leak grows in both, a warm-up in the first."""
    late = [(t, r) for t, r in samples if t >= after_s - 1e-6]
    if len(late) < 3:
        return float("nan"), float("nan"), float("nan")
    t, r = np.array(late).T
    slope = float(np.polyfit(t / 60, r, 1)[0])
    mid = len(late) // 2
    return slope, float(r[mid] - r[0]), float(r[-1] - r[mid])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="soak duration")
    parser.add_argument("--load-fraction", type=float, default=0.8, help="arrival rate / measured capacity")
    parser.add_argument("--seed", type=int, default=17, help="draws the requests")
    parser.add_argument("--concurrency", type=int, default=16, help="capacity run: connections")
    parser.add_argument("--capacity-seconds", type=float, default=30.0, help="capacity run: duration")
    parser.add_argument("--rate", type=float, help="arrivals/s: skip the capacity run, use this rate")
    parser.add_argument("--interval", type=float, default=60.0, help="seconds per row (a minute)")
    parser.add_argument("--mix", default="upload=4,url=3,lookup=2,gbif=1",
                        help="relative weights of the request kinds")  # fmt: skip
    parser.add_argument("--index-photos", type=int, default=20, help="Leeds photos per species indexed")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--max-rss-growth", type=float, default=5.0, help="%%, PASS below")
    args = parser.parse_args(argv)
    if not (SHARED / "models" / "aiy_birds_v1" / "model.tflite").exists():
        sys.exit(f"{SHARED} not found: this benchmark needs ../shared")
    weights = {k: float(v) for k, v in (part.split("=") for part in args.mix.split(","))}
    if set(weights) - set(KINDS) or not any(weights.values()):
        sys.exit(f"--mix: weights of {', '.join(KINDS)}")

    started_all = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="species-soak-"))
    manifest = work / "models.toml"
    models = write_manifest(manifest)
    index_line, index_s = build_index(work, manifest, args.index_photos)
    sets = photo_sets(work)  # real photos + 12 MP JPEGs, copied to work/www
    lookups = [image for image, _ in leeds(SHARED)]
    for image in lookups:
        if not (work / "www" / image.name).exists():
            shutil.copyfile(image, work / "www" / image.name)
    static, photo_url = static_server(work / "www")
    fake = FakeGbif().__enter__()
    env = {**service_env(work), "MODELS_MANIFEST": str(manifest), "GBIF_API_URL": fake.base_url}
    env.pop("MAX_QUEUE")  # the service's own admission limit (serving.py raises it to 256)
    command = [sys.executable, "-m", "uvicorn", "app.main:app"]
    if args.workers > 1:
        command += ["--workers", str(args.workers)]
    server = Server(command, env, work / "service.log")
    pid = server.proc.pid
    photos = sets["real photos"] + sets["12 MP JPEGs"]
    mix = Mix(server.port, photos, lookups, gbif_names(), photo_url, weights, args.seed)
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start (other work "
          f"shares this machine); models: {', '.join(models)}")  # fmt: skip
    print(f"index: {index_line} ({index_s:.1f} s, build-index CLI)")
    print(f"server: uvicorn app.main:app, {args.workers} process(es), ready in {server.startup_s:.2f} s; "
          f"photos: {len(sets['real photos'])} real + {len(sets['12 MP JPEGs'])} 12 MP classified, "
          f"{len(lookups)} Leeds for lookups, {len(mix.names)} GBIF names; work dir {work}")  # fmt: skip
    print("mix: " + ", ".join(f"{k} {v / sum(weights.values()):.0%}" for k, v in weights.items()))
    code = 1
    try:
        warm = asyncio.run(warm_up(server.port, mix))
        print(f"warm-up: {sum(warm.values())} requests, statuses {dict(warm)}")
        if args.rate:
            rate = args.rate
            print(f"rate given: {rate:.1f} requests/s (no capacity run)")
        else:
            before = (tree_cpu_s(pid), time.monotonic(), *machine_cpu_s())
            capacity, measured, share = asyncio.run(
                closed_loop(server.port, mix, args.concurrency, args.capacity_seconds, 10**7)
            )
            after = (tree_cpu_s(pid), time.monotonic(), *machine_cpu_s())
            server_share = (after[0] - before[0]) / ((after[1] - before[1]) * (os.cpu_count() or 1))
            machine_share = (after[2] - before[2]) / max(after[3] - before[3], 1e-9)
            records = measured.rows[-1]
            p50, p99 = percentiles(records)
            rate = args.load_fraction * capacity
            print(f"capacity: {capacity:.1f} requests/s closed-loop at concurrency {args.concurrency} "
                  f"for {args.capacity_seconds:.0f} s ({len(records)} requests, p50 {p50:.0f} ms, "
                  f"p99 {p99:.0f} ms, errors {show_errors(errors_of(records))}, "
                  f"CPU: server {server_share:.0%}, load generator {share:.0%}, whole machine "
                  f"{machine_share:.0%})")  # fmt: skip
            for sample in measured.error_samples[:3]:
                print(f"  {sample}")
        print(f"soak: {args.minutes:g} min open-loop at {rate:.1f} requests/s ({args.load_fraction:.0%} "
              "of capacity); latency from when each request was due\n")  # fmt: skip
        rows, samples, totals = asyncio.run(
            open_loop(server.port, mix, rate, args.minutes * 60, args.interval, pid, 0)
        )
        code = report(rows, samples, totals, args, rate, work)
    finally:
        server.stop()
        static.shutdown()
        fake.__exit__()
    print(f"took {time.monotonic() - started_all:.0f} s")
    return code


def report(rows: list[Row], samples: Samples, totals: dict, args: argparse.Namespace,
           rate: float, work: Path) -> int:  # fmt: skip
    everything = [r for row in rows for r in row.records]
    offered = sum(row.offered for row in rows)
    errors = errors_of(everything)
    p50, p99 = percentiles(everything)
    ok = [r.ms for r in everything if r.status == 200]
    p999 = float(np.percentile(ok, 99.9)) if ok else float("nan")
    print(f"\ntotal: {offered} offered, {len(everything)} answered in {totals['elapsed']:.0f} s "
          f"({len(everything) / totals['elapsed']:.1f}/s for {rate:.1f}/s offered), "
          f"{sum(errors.values())} errors ({show_errors(errors)}); p50 {p50:.0f} ms, p99 {p99:.0f} ms, "
          f"p99.9 {p999:.0f} ms")  # fmt: skip
    for kind in KINDS:
        mine = [r for r in everything if r.kind == kind]
        if mine:
            k50, k99 = percentiles(mine)
            print(f"  {kind:<7} {len(mine):6d} requests, errors {show_errors(errors_of(mine)):<10} "
                  f"p50 {k50:5.0f} ms  p99 {k99:6.0f} ms")  # fmt: skip
    print(f"  load generator {totals['generator_share']:.0%} of the CPUs; at most "
          f"{totals['peak_in_flight']} requests in flight on {totals['connections']} connections; "
          f"scheduler lateness at most {max(row.lag_ms for row in rows):.0f} ms")  # fmt: skip
    seconds = sum(row.seconds for row in rows)
    server = sum(row.server_cpu * row.seconds for row in rows) / seconds
    machine = sum(row.machine_cpu * row.seconds for row in rows) / seconds
    others = max(0.0, machine - server - totals["generator_share"])
    print(f"  CPU over the soak (share of all cores): machine {machine:.0%} = server {server:.0%} + load "
          f"generator {totals['generator_share']:.0%} + other work on the machine {others:.0%}")  # fmt: skip
    if totals["unfinished"]:
        late = REQUEST_TIMEOUT_S + 5
        print(f"  {totals['unfinished']} requests still unanswered {late:.0f} s after the end")
    for sample in totals["error_samples"]:
        print(f"  error: {sample}")
    if errors:
        print(f"  server log: {work / 'service.log'}")

    first = rows[0].rss
    last = rows[-1].rss
    growth = (last - first) / first * 100
    slope, first_half, second_half = rss_trend(samples, rows[0].seconds if len(rows) > 1 else 0.0)
    peak = max(r for _, r in samples)
    print(f"RSS: {samples[0][1]:.1f} MiB at the start, {first:.1f} MiB after the first row "
          f"({rows[0].label}), {last:.1f} MiB at the end, at most {peak:.1f} MiB: growth after the "
          f"first row {growth:+.2f} % (slope {slope:+.2f} MiB/min over {len(samples)} samples; first half "
          f"{first_half:+.1f} MiB, second half {second_half:+.1f} MiB)")  # fmt: skip
    print("RSS per row: " + " ".join(f"{row.rss:.1f}" for row in rows))
    passed = not errors and not totals["unfinished"] and growth < args.max_rss_growth
    verdict = "PASS" if passed else "FAIL"
    print(f"{verdict}: {sum(errors.values())} errors (target 0), RSS growth {growth:+.2f} % after the "
          f"first minute (target < {args.max_rss_growth:g} %), {args.minutes:g} min at {rate:.1f} "
          "requests/s")  # fmt: skip
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
