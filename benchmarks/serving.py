"""End-to-end serving benchmark, side by side in one run on this machine.

    .venv/bin/python benchmarks/serving.py              # needs ../shared (real models and photos)

Compares, for the birds model:
  (a) the in-process limit: the service's own decode + preprocess + infer loop on worker threads,
      no HTTP;
  (b) a naive server in the style of the original (benchmarks/naive_app.py: blocking full-size
      decode and inference inside an ``async def``);
  (c) this service (uvicorn, one process),
driven over loopback at concurrency 1, 4 and 16, by upload and by URL (a local static server),
with real photos (../shared samples + Leeds) and with 12 MP JPEGs. Then micro-batching on an
InceptionV3-sized SavedModel (random weights), batch 1 vs BATCH_MAX_SIZE=16, at concurrency 16.
The load generator runs on the same 2 cores as the servers: every figure pays for it equally.

    .venv/bin/python benchmarks/serving.py --baseline main   # before/after for a refactor

With ``--baseline REV`` it runs only a regression check instead: (c) from a detached git worktree of
REV (before) and (c) from this working tree, uncommitted edits included (after), both up at once,
driven in turns (before, after, after, before, ...: drift and noise hit both sides equally) at
concurrency 16 with the real photos, by upload and by URL; per input mode it prints img/s per round,
each side's median and after/before, and the same for p99 latency, PASS when the img/s ratio is at
least ``--min-ratio`` and the p99 ratio at most its inverse (exit status 1 if not).

    .venv/bin/python benchmarks/serving.py --identify        # POST /v1/identify vs the old page's calls

With ``--identify`` it runs only the observation comparison, on one server with the shipped
manifest's classifiers that /v1/identify reads (birds + insects: ``features_tensor``,
``class_weights_tensor``, ``calibration``; written as the benchmark's own manifest with absolute
paths): (i) one POST /v1/identify per photo against (ii) what the page's "auto" mode sent before
/v1/identify (app/web/app.js at 13603f9: ``Promise.allSettled`` over the groups), /bird_url and
/insect_url with the same photo at once on two keep-alive connections, one photo done when both
have answered. Same photos, same server, by upload and by URL, real photos and 12 MP JPEGs, at
concurrency 16 and 4 (photos in flight); the two sides are driven in turns (identify, pair, pair,
identify, ...) for ``--rounds`` rounds and it prints photos/s per side (medians) and
identify/pair, PASS at or above ``--min-identify-ratio`` (exit status 1 if not); beside it the
service's CPU ms per photo (all threads, and the event loop's part), which other load on a shared
machine moves far less than photos/s, and the ceiling without HTTP: ``Identifier.identify`` of
each photo (one decode, both models) against a request naming each model (a decode each), on the
service's worker threads.
``--pairs sequential`` sends /insect_url only after /bird_url answered (a page awaiting each).
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import http.server
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("SPECIES_SHARED_DIR", REPO.parent / "shared"))
BIRDS = SHARED / "models" / "aiy_birds_v1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    def __init__(self, command: list[str], env: dict[str, str], log: Path, cwd: Path = REPO) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log.open("wb")
        started = time.monotonic()
        self.proc = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(self.port), "--log-level", "warning"],
            cwd=cwd, env={**os.environ, **env}, stdout=self.log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        ready = "/health/ready" if "app.main:app" in command else "/docs"
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{command} exited; see {log}")
            try:
                if httpx.get(self.url + ready, timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.startup_s = time.monotonic() - started

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)
        self.log.close()


def static_server(root: Path) -> tuple[http.server.ThreadingHTTPServer, str]:
    class Quiet(http.server.SimpleHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as a real image host
        disable_nagle_algorithm = True  # else headers and body meet delayed ACKs: +40 ms per photo

        def log_message(self, *args: object) -> None:
            pass

    class Server(http.server.ThreadingHTTPServer):
        request_queue_size = 128  # socketserver's default of 5 drops SYNs under load (1 s retries)
        daemon_threads = True

    server = Server(("127.0.0.1", 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def request_bytes(port: int, route: str, name: str, payload: bytes | str) -> bytes:
    """One complete HTTP/1.1 request, built once: the load generator then only writes bytes and
    reads answers, so its own CPU use stays small next to the servers' (they share 2 cores)."""
    head = f"Host: 127.0.0.1:{port}\r\nConnection: keep-alive\r\n"
    if isinstance(payload, str):
        target = f"{route}?" + httpx.QueryParams({"img_url": payload}).__str__()
        return f"POST {target} HTTP/1.1\r\n{head}Content-Length: 0\r\n\r\n".encode()
    boundary = "----species-bench-7d3f"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="{name}"\r\n'
            f"Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + payload
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return (
        f"POST {route} HTTP/1.1\r\n{head}Content-Type: multipart/form-data; boundary={boundary}\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, request: bytes) -> int:
    writer.write(request)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    await reader.readexactly(length)
    return status


async def drive(url: str, route: str, payloads: list[tuple[str, bytes | str]], concurrency: int, total: int):
    """``total`` requests over ``concurrency`` keep-alive connections; (img/s, p50, p99 ms, errors)."""
    port = int(url.rsplit(":", 1)[1])
    requests = [request_bytes(port, route, name, payload) for name, payload in payloads]
    latencies: list[float] = []
    errors = 0
    next_index = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=2**24)
        await exchange(reader, writer, requests[0])  # warm-up, not timed
        await barrier.wait()
        for i in next_index:
            started = time.perf_counter()
            status = await exchange(reader, writer, requests[i % len(requests)])
            latencies.append(time.perf_counter() - started)
            errors += status != 200
        writer.close()

    barrier = asyncio.Barrier(concurrency + 1)
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    client_share = (time.process_time() - cpu) / (elapsed * (os.cpu_count() or 1))
    ms = np.array(latencies) * 1000
    return total / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99)), errors, client_share


def in_process(photos: list[bytes], workers: int, total: int) -> tuple[float, float, float]:
    """(a): the service's infer_now (decode -> model) on `workers` threads, no HTTP."""
    from app.models.inference import infer_now
    from app.models.registry import open_registry
    from app.settings import AdmissionSettings, ImageSettings, ModelSettings

    max_pixels = ImageSettings().max_pixels
    registry = open_registry(
        ModelSettings(manifest=BIRDS_MANIFEST),
        AdmissionSettings(inference_workers=workers),
        only="aiy_birds_v1",
    )
    model = registry.get_ready("aiy_birds_v1")

    def one(i: int) -> float:
        started = time.perf_counter()
        infer_now(model, photos[i % len(photos)], max_pixels)
        return time.perf_counter() - started

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one, range(workers * 2)))  # warm-up
        started = time.perf_counter()
        times = list(pool.map(one, range(total)))
        elapsed = time.perf_counter() - started
    registry.close()
    ms = np.array(times) * 1000
    return total / elapsed, float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


BIRDS_MANIFEST = Path(tempfile.gettempdir()) / "species-bench-models.toml"


def write_birds_manifest() -> None:
    BIRDS_MANIFEST.write_text(
        '[[models]]\nname = "aiy_birds_v1"\ntask = "classifier"\nformat = "tflite"\ngroup = "bird"\n'
        f'file = "{BIRDS / "model.tflite"}"\nlabels = "{BIRDS / "labelmap.csv"}"\nbackground_index = 964\n'
    )


def real_photos() -> list[Path]:
    real = sorted((SHARED / "samples").glob("*.*"))
    real = [p for p in real if p.suffix.lower() in (".jpg", ".bmp", ".png")]
    return real + sorted((SHARED / "datasets" / "leedsbutterfly" / "images").glob("*.jpg"))[::10]


def service_env(work: Path) -> dict[str, str]:
    """The environment of (c), this service, in every section."""
    return {"MODELS_MANIFEST": str(BIRDS_MANIFEST), "ALLOW_PRIVATE_NETWORKS": "true", "MAX_QUEUE": "256",
            "GBIF_CACHE_PATH": str(work / "gbif.sqlite"), "INDEX_DIR": str(work / "index")}  # fmt: skip


def photo_sets(work: Path) -> dict[str, list[Path]]:
    real = real_photos()
    big_dir = work / "12mp"
    big_dir.mkdir(exist_ok=True)
    big = []
    for i, source in enumerate(real[-6:]):
        target = big_dir / f"big{i}.jpg"
        Image.open(source).convert("RGB").resize((4000, 3000), Image.BICUBIC).save(target, "JPEG", quality=90)
        big.append(target)
    www = work / "www"
    www.mkdir(exist_ok=True)
    for p in real + big:
        (www / p.name).write_bytes(p.read_bytes())
    return {"real photos": real, "12 MP JPEGs": big}


def build_inception(path: Path) -> Path:
    import tensorflow as tf

    model = tf.keras.applications.InceptionV3(weights=None, classes=1000, input_shape=(299, 299, 3))

    class Wrapped(tf.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 299, 299, 3], tf.float32, name="images")])
        def __call__(self, images):
            return {"probabilities": self.model(images, training=False)}

    module = Wrapped()
    tf.saved_model.save(module, str(path), signatures={"serving_default": module.__call__})
    (path.parent / "inception_labels.txt").write_text("\n".join(f"class {i}" for i in range(1000)) + "\n")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=160, help="per cell, real photos")
    parser.add_argument("--big-requests", type=int, default=32, help="per cell, 12 MP JPEGs")
    parser.add_argument("--skip-batching", action="store_true")
    parser.add_argument("--baseline", metavar="REV", help="only compare (c) at git REV with this tree")
    parser.add_argument(
        "--rounds", type=int, default=5, help="--baseline, --identify: runs per side and cell"
    )
    parser.add_argument("--min-ratio", type=float, default=0.97, help="--baseline: PASS at or above")
    parser.add_argument("--identify", action="store_true",
                        help="only compare POST /v1/identify with /bird_url + /insect_url")  # fmt: skip
    parser.add_argument(
        "--observations", type=int, default=128, help="--identify: photos per run, real photos"
    )
    parser.add_argument("--big-observations", type=int, default=64, help="--identify: photos per run, 12 MP")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[16, 4], help="--identify: photos in flight"
    )
    parser.add_argument("--pairs", choices=("parallel", "sequential"), default="parallel",
                        help="--identify: the legacy calls at once (the old page) or in turn")  # fmt: skip
    parser.add_argument("--min-identify-ratio", type=float, default=1.6, help="--identify: PASS at or above")
    args = parser.parse_args()
    if not (BIRDS / "model.tflite").exists():
        sys.exit(f"{BIRDS} not found: this benchmark needs ../shared")
    if args.identify:
        totals = {"real photos": args.observations, "12 MP JPEGs": args.big_observations}
        sys.exit(compare_identify(args.rounds, totals, args.concurrency, args.pairs, args.min_identify_ratio))
    if args.baseline:
        sys.exit(compare_with(args.baseline, args.rounds, args.requests, args.min_ratio))
    from app.settings import AdmissionSettings

    workers = AdmissionSettings().inference_workers  # (a) gets the service's own default
    work = Path(tempfile.mkdtemp(prefix="species-bench-"))
    write_birds_manifest()
    sets = photo_sets(work)
    static, static_url = static_server(work / "www")
    print(f"{os.cpu_count()} CPUs, {workers} inference workers; photos: "
          + ", ".join(f"{len(v)} {k}" for k, v in sets.items()))  # fmt: skip

    uvicorn = [sys.executable, "-m", "uvicorn"]
    service = Server([*uvicorn, "app.main:app"], service_env(work), work / "service.log")
    naive = Server([*uvicorn, "benchmarks.naive_app:app"], {"NAIVE_MODEL": str(BIRDS / "model.tflite")},
                   work / "naive.log")  # fmt: skip
    print(f"service ready in {service.startup_s:.2f} s (process start to /health/ready 200)")

    rows = []
    for set_name, photos in sets.items():
        data = [p.read_bytes() for p in photos]
        total = args.requests if set_name == "real photos" else args.big_requests
        limit = in_process(data, workers, total)
        for concurrency in (1, 4, 16):
            for mode in ("upload", "url"):
                payloads: list[tuple[str, bytes | str]] = (
                    [(p.name, d) for p, d in zip(photos, data, strict=True)]
                    if mode == "upload"
                    else [(p.name, f"{static_url}/{p.name}") for p in photos]
                )
                c = asyncio.run(drive(service.url, "/bird_url", payloads, concurrency, total))
                b = asyncio.run(drive(naive.url, "/bird_url", payloads, concurrency, total))
                rows.append((set_name, mode, concurrency, limit, b, c))
    static.shutdown()

    print(f"\n{'photos':<12} {'input':<7} {'conc':>4} | {'(a) in-process':>22} | {'(b) naive':>22} | "
          f"{'(c) service':>22} | {'c/a':>5} {'c/b':>5} | bench CPU")  # fmt: skip
    print(f"{'':<12} {'':<7} {'':>4} | {'img/s  p50  p99 ms':>22} | {'img/s  p50  p99 ms':>22} | "
          f"{'img/s  p50  p99 ms':>22} |")  # fmt: skip
    for set_name, mode, concurrency, a, b, c in rows:

        def cell(r: tuple) -> str:
            return f"{r[0]:6.1f} {r[1]:5.0f} {r[2]:6.0f}"

        errors = f"  ({c[3]} errors)" if c[3] else ""
        print(f"{set_name:<12} {mode:<7} {concurrency:>4} | {cell(a):>22} | {cell(b):>22} | {cell(c):>22} | "
              f"{c[0] / a[0]:5.2f} {c[0] / b[0]:5.2f} | {c[4]:8.0%}{errors}")  # fmt: skip
    service_rss, naive_rss = rss_mib(service.proc.pid), rss_mib(naive.proc.pid)
    print(f"\nRSS after the load: service {service_rss:.0f} MiB, naive {naive_rss:.0f} MiB")
    service.stop()
    naive.stop()

    if args.skip_batching:
        return
    model = build_inception(work / "inception")
    manifest = work / "inception.toml"
    manifest.write_text(
        '[[models]]\nname = "inception_random"\ntask = "classifier"\nformat = "saved_model"\n'
        f'file = "{model}"\nlabels = "{work / "inception_labels.txt"}"\n'
        'input = { size = [299, 299], dtype = "float32", range = [0.0, 1.0] }\n'
    )
    payloads = [(p.name, p.read_bytes()) for p in sets["real photos"]]
    results = {}
    for batch in (1, 16):
        server = Server([*uvicorn, "app.main:app"],
                        {"MODELS_MANIFEST": str(manifest), "BATCH_MAX_SIZE": str(batch), "MAX_QUEUE": "256",
                         "GBIF_CACHE_PATH": str(work / "gbif.sqlite")},
                        work / f"inception-{batch}.log")  # fmt: skip
        measured = asyncio.run(drive(server.url, "/v1/classify/inception_random", payloads, 16, 96))
        samples = {
            sample.name: sample.value
            for family in text_string_to_metric_families(httpx.get(f"{server.url}/metrics").text)
            for sample in family.samples
            if sample.name in ("model_batch_size_sum", "model_batch_size_count")
        }
        count = samples.get("model_batch_size_count", 0.0)
        mean_batch = samples["model_batch_size_sum"] / count if count else 1.0  # 1: no batcher
        results[batch] = (*measured, server.startup_s, rss_mib(server.proc.pid), mean_batch)
        server.stop()
    print("\nInceptionV3-sized SavedModel (random weights, 299x299), 96 uploads at concurrency 16:")
    for batch, r in results.items():
        print(f"  BATCH_MAX_SIZE={batch:<3} {r[0]:6.1f} img/s  p50 {r[1]:6.0f} ms  p99 {r[2]:6.0f} ms  "
              f"mean batch {r[7]:4.1f}  ready in {r[5]:.1f} s  RSS {r[6]:.0f} MiB")  # fmt: skip
    print(f"  micro-batching gain: {results[16][0] / results[1][0]:.2f}x throughput")
    ceiling = model_level(model)
    print(f"  the model alone, same process, batch 1 vs 16: {ceiling[0]:.1f} vs {ceiling[1]:.1f} img/s "
          f"= {ceiling[1] / ceiling[0]:.2f}x: the most batching can give on this CPU")  # fmt: skip


@contextmanager
def worktree(rev: str) -> Iterator[Path]:
    """A detached git worktree of ``rev`` in a temporary folder, removed again on the way out."""
    path = Path(tempfile.mkdtemp(prefix="species-baseline-"))
    try:
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--quiet", "--detach", str(path), rev],
                       check=True)  # fmt: skip
        yield path
    finally:
        subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)


def imported_from(root: Path, env: dict[str, str]) -> Path:
    """Where ``import app`` resolves with this cwd and environment (the servers' own)."""
    out = subprocess.run([sys.executable, "-c", "import app; print(app.__file__)"], cwd=root,
                         env={**os.environ, **env}, capture_output=True, text=True, check=True)  # fmt: skip
    path = Path(out.stdout.strip())
    if not path.is_relative_to(root):
        raise RuntimeError(f"app imports from {path}, not from {root}")
    return path


def compare_with(rev: str, rounds: int, total: int, min_ratio: float) -> int:
    """(c) at ``rev`` (before) vs (c) from this working tree (after); 0 when every ratio passes."""
    commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", f"{rev}^{{commit}}"],
                            capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--", "app"],
                           capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=True).stdout.strip()  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix="species-bench-"))
    write_birds_manifest()
    photos = real_photos()
    www = work / "www"
    www.mkdir()
    for p in photos:
        (www / p.name).write_bytes(p.read_bytes())
    data = [p.read_bytes() for p in photos]
    inputs: dict[str, list[tuple[str, bytes | str]]] = {
        "upload": [(p.name, d) for p, d in zip(photos, data, strict=True)]
    }
    static, static_url = static_server(www)
    inputs["url"] = [(p.name, f"{static_url}/{p.name}") for p in photos]
    uvicorn = [sys.executable, "-m", "uvicorn", "app.main:app"]
    servers: dict[str, Server] = {}
    rates: dict[tuple[str, str], list[float]] = {(s, m): [] for s in ("before", "after") for m in inputs}
    p99s: dict[tuple[str, str], list[float]] = {key: [] for key in rates}
    errors = 0
    started = time.monotonic()
    try:
        with worktree(commit) as tree:
            roots = {"before": tree, "after": REPO}
            print(f"before: {rev} = {commit[:12]} (worktree {tree})")
            print(f"after:  this working tree, HEAD {head}"
                  + (", with uncommitted changes under app/" if dirty else ", app/ clean"))  # fmt: skip
            for side, root in roots.items():
                (work / side).mkdir()
                env = {**service_env(work / side), "PYTHONPATH": str(root)}
                print(f"  {side:<6} imports app from {imported_from(root, env)}")
                servers[side] = Server(uvicorn, env, work / f"{side}.log", cwd=root)
                print(f"  {side:<6} ready in {servers[side].startup_s:.2f} s")
            print(f"{os.cpu_count()} CPUs; {len(photos)} real photos; {rounds} rounds of {total} requests "
                  "per side and input mode at concurrency 16, after a warm-up run each")  # fmt: skip
            for mode, payloads in inputs.items():
                for side in roots:
                    asyncio.run(drive(servers[side].url, "/bird_url", payloads, 16, min(total, 64)))
                for i in range(rounds):
                    order = ("before", "after") if i % 2 == 0 else ("after", "before")
                    for side in order:
                        measured = asyncio.run(drive(servers[side].url, "/bird_url", payloads, 16, total))
                        rates[side, mode].append(measured[0])
                        p99s[side, mode].append(measured[2])
                        errors += measured[3]
    finally:
        for server in servers.values():
            server.stop()
        static.shutdown()

    failed = errors > 0
    print(f"\n{'input':<7} {'round':>6} | {'before img/s':>12} | {'after img/s':>11} | after/before | "
          f"{'before p99':>10} | {'after p99':>9} | after/before")  # fmt: skip
    for mode in inputs:
        before, after = rates["before", mode], rates["after", mode]
        slow_before, slow_after = p99s["before", mode], p99s["after", mode]
        for i, (b, a, pb, pa) in enumerate(zip(before, after, slow_before, slow_after, strict=True), 1):
            print(f"{mode:<7} {i:>6} | {b:12.1f} | {a:11.1f} | {a / b:12.3f} | {pb:7.0f} ms | {pa:6.0f} ms | "
                  f"{pa / pb:12.3f}")  # fmt: skip
        ratio = float(np.median(after) / np.median(before))
        paired = float(np.median(np.array(after) / np.array(before)))  # each round's two runs are adjacent
        # p99 the other way round: after/before at most 1/min_ratio (5 % slower tails at 0.95).
        tail = float(np.median(slow_after) / np.median(slow_before))
        passed = ratio >= min_ratio and tail <= 1 / min_ratio
        failed |= not passed
        verdict = "PASS" if passed else "FAIL"
        print(f"{mode:<7} {'median':>6} | {np.median(before):12.1f} | {np.median(after):11.1f} | "
              f"{ratio:12.3f} | {np.median(slow_before):7.0f} ms | {np.median(slow_after):6.0f} ms | "
              f"{tail:12.3f}  {verdict} (img/s >= {min_ratio}, p99 <= {1 / min_ratio:.3f}); "
              f"rounds' median img/s {paired:.3f}")  # fmt: skip
    if errors:
        print(f"FAIL: {errors} requests did not answer 200 (logs in {work})")
    print(f"took {time.monotonic() - started:.0f} s")
    return 1 if failed else 0


IDENTIFY_MANIFEST = Path(tempfile.gettempdir()) / "species-bench-identify.toml"
SHIPPED_MANIFEST = REPO / "volumes" / "models" / "models.toml"
MANIFEST_PATHS = ("file", "labels", "common_names", "taxonomy", "calibration")  # relative to the manifest


def cpu_s(pid: int, thread: int | None = None) -> float:
    """CPU seconds (user + system) the process (every thread), or one thread of it, has used."""
    stat = Path(f"/proc/{pid}/task/{thread}/stat" if thread is not None else f"/proc/{pid}/stat")
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a TOML basic string for these values (paths, names, tensor names)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(f"no TOML for {value!r}")


def write_identify_manifest(path: Path = IDENTIFY_MANIFEST) -> list[dict[str, object]]:
    """The shipped manifest's classifiers that /v1/identify reads (``features_tensor``,
    ``class_weights_tensor`` and ``calibration`` declared), with absolute paths: each file from
    volumes/models, else from ../shared/models; an optional one found in neither (a taxonomy not
    linked yet) is left out, and the model file must be found. Returns the entries written."""
    entries = []
    for entry in tomllib.loads(SHIPPED_MANIFEST.read_text(encoding="utf-8"))["models"]:
        if entry.get("task") != "classifier" or not all(
            entry.get(key) for key in ("features_tensor", "class_weights_tensor", "calibration", "group")
        ):
            continue
        entry = dict(entry)
        for key in MANIFEST_PATHS:
            if key not in entry:
                continue
            found = [
                b / entry[key]
                for b in (SHIPPED_MANIFEST.parent, SHARED / "models")
                if (b / entry[key]).exists()
            ]
            if found:
                entry[key] = str(found[0])
            elif key == "file":
                raise FileNotFoundError(
                    f"{entry['name']}: {entry[key]} in neither volumes/models nor ../shared"
                )
            else:
                del entry[key]
        entries.append(entry)
    path.write_text(
        "".join(
            "[[models]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in e.items()) + "\n" for e in entries
        )
    )
    return entries


async def drive_observations(url: str, plans: list[list[bytes]], concurrency: int, total: int,
                             parallel: bool = True, pid: int | None = None):  # fmt: skip
    """``total`` photos, ``concurrency`` at a time; a photo's plan is the request(s) that get it
    identified: sent at once on one keep-alive connection each (``parallel``, as a browser's
    ``Promise.all`` does), or one after the other on one. A photo is done when every answer is in.
    (photos/s, p50, p99 ms per photo, requests not answered 200, the load generator's CPU share,
    then over the timed part the CPU ms per photo of the server process ``pid``, all threads and
    its main thread (the event loop): nan without one)."""
    port = int(url.rsplit(":", 1)[1])
    width = max(len(plan) for plan in plans) if parallel else 1
    latencies: list[float] = []
    errors = 0
    next_index = iter(range(total))

    async def worker() -> None:
        nonlocal errors
        streams = [await asyncio.open_connection("127.0.0.1", port, limit=2**24) for _ in range(width)]

        async def one(plan: list[bytes]) -> list[int]:
            if parallel:
                return await asyncio.gather(
                    *(exchange(r, w, req) for (r, w), req in zip(streams, plan, strict=True))
                )
            return [await exchange(*streams[0], req) for req in plan]

        await one(plans[0])  # warm-up, not timed
        await barrier.wait()
        for i in next_index:
            started = time.perf_counter()
            statuses = await one(plans[i % len(plans)])
            latencies.append(time.perf_counter() - started)
            errors += sum(status != 200 for status in statuses)
        for _, writer in streams:
            writer.close()

    barrier = asyncio.Barrier(concurrency + 1)
    tasks = [asyncio.create_task(worker()) for _ in range(concurrency)]
    await barrier.wait()
    started, cpu = time.perf_counter(), time.process_time()
    server_cpu = (cpu_s(pid), cpu_s(pid, pid)) if pid is not None else (np.nan, np.nan)
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    after = (cpu_s(pid), cpu_s(pid, pid)) if pid is not None else (np.nan, np.nan)
    server_ms = [(a - b) * 1000 / total for a, b in zip(after, server_cpu, strict=True)]
    client_share = (time.process_time() - cpu) / (elapsed * (os.cpu_count() or 1))
    ms = np.array(latencies) * 1000
    p50, p99 = float(np.percentile(ms, 50)), float(np.percentile(ms, 99))
    return total / elapsed, p50, p99, errors, client_share, *server_ms


def in_process_identify(photos: list[bytes], workers: int, total: int, rounds: int) -> dict[str, list[tuple]]:
    """The ceiling, no HTTP: per photo, what /v1/identify runs (``Identifier.identify`` of a
    ``Request`` of the photo: one decode, every model, judged and decided) against what /bird_url
    and /insect_url run (a ``Request`` naming each model, ``scores="model"``: a decode per model),
    on the service's ``InferenceRunner`` with ``workers`` threads, in turns; per side and round
    (photos/s, CPU ms per photo of this process)."""
    import asyncio

    from app.enrich.taxonomies import TaxonomyBook
    from app.identification.request import Request
    from app.identification.service import Identifier
    from app.imaging.photo import Photo
    from app.models.registry import open_registry
    from app.models.runner import InferenceRunner
    from app.settings import AdmissionSettings, ImageSettings, ModelSettings, RankingSettings

    max_pixels = ImageSettings().max_pixels
    registry = open_registry(
        ModelSettings(manifest=IDENTIFY_MANIFEST), AdmissionSettings(inference_workers=workers)
    )
    models = [m for m in registry.entries() if m.spec.task == "classifier" and m.state == "ready"]
    in_flight = 2 * workers  # enough to keep every worker thread busy; the runner admits them all
    runner = InferenceRunner(workers=workers, max_queue=in_flight)
    identifier = Identifier(registry, runner, TaxonomyBook(), RankingSettings(), max_pixels=max_pixels)
    uploads = [Photo(data=d, source="upload") for d in photos]
    requests = {
        "identify": [Request([uploads[i % len(photos)]], with_index=False) for i in range(total)],
        "pair": [Request([uploads[i % len(photos)]], model=m.name, scores="model", with_index=False)
                 for i in range(total) for m in models],
    }  # fmt: skip

    async def answer_all(side: list[Request]) -> None:
        gate = asyncio.Semaphore(in_flight)

        async def one(request: Request) -> None:
            async with gate:
                await identifier.identify(request)

        await asyncio.gather(*(one(request) for request in side))

    results: dict[str, list[tuple]] = {side: [] for side in requests}
    try:
        for side in requests:  # warm-up
            asyncio.run(answer_all(requests[side][: workers * 4]))
        for i in range(rounds):
            for side in list(requests) if i % 2 == 0 else list(requests)[::-1]:
                started, cpu = time.perf_counter(), time.process_time()
                asyncio.run(answer_all(requests[side]))
                elapsed = time.perf_counter() - started
                results[side].append((total / elapsed, (time.process_time() - cpu) * 1000 / total))
    finally:
        runner.shutdown()
        registry.close()
    return results


def compare_identify(rounds: int, totals: dict[str, int], concurrencies: list[int], pairs: str,
                     min_ratio: float) -> int:  # fmt: skip
    """POST /v1/identify vs /bird_url + /insect_url for the same photos on one server; 0 on PASS."""
    started_all = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="species-bench-"))
    entries = write_identify_manifest()
    routes = [f"/{e['group']}_url" for e in entries]
    sets = photo_sets(work)
    from app.settings import AdmissionSettings

    workers = AdmissionSettings().inference_workers
    ceiling_rounds = rounds
    ceilings = {
        name: in_process_identify([p.read_bytes() for p in photos], workers, totals[name], ceiling_rounds)
        for name, photos in sets.items()
    }
    static, static_url = static_server(work / "www")
    env = {**service_env(work), "MODELS_MANIFEST": str(IDENTIFY_MANIFEST)}
    server = Server([sys.executable, "-m", "uvicorn", "app.main:app"], env, work / "identify.log")
    parallel = pairs == "parallel"
    pair_name = " + ".join(routes) + (" at once" if parallel else ", one after the other")
    print(
        f"{os.cpu_count()} CPUs; manifest {IDENTIFY_MANIFEST}: " + ", ".join(str(e["name"]) for e in entries)
    )
    print(
        f"service ready in {server.startup_s:.2f} s; photos: "
        + ", ".join(f"{len(v)} {k}" for k, v in sets.items())
    )
    print(f"identify: one POST /v1/identify per photo; pair: {pair_name} (one photo = both answered)")
    sides = ("identify", "pair")
    rows = []
    errors = 0
    try:
        first = sets["real photos"][0]
        check = httpx.post(
            f"{server.url}/v1/identify", files={"image": (first.name, first.read_bytes())}, timeout=30
        )
        check.raise_for_status()
        print("  /v1/identify reads: " + ", ".join(f"{m['model']} ({m['signal']} {m['scope']:.3f})"
                                                  for m in check.json()["models"]))  # fmt: skip
        if len(check.json()["models"]) != len(entries):
            raise RuntimeError(f"/v1/identify read {len(check.json()['models'])} models, not {len(entries)}")
        for set_name, photos in sets.items():
            data = [p.read_bytes() for p in photos]
            total = totals[set_name]
            for mode in ("upload", "url"):
                payloads: list[tuple[str, bytes | str]] = (
                    [(p.name, d) for p, d in zip(photos, data, strict=True)]
                    if mode == "upload"
                    else [(p.name, f"{static_url}/{p.name}") for p in photos]
                )
                plans = {
                    "identify": [[request_bytes(server.port, "/v1/identify", n, pl)] for n, pl in payloads],
                    "pair": [[request_bytes(server.port, r, n, pl) for r in routes] for n, pl in payloads],
                }
                for concurrency in concurrencies:
                    measured: dict[str, list[tuple]] = {side: [] for side in sides}
                    for side in sides:  # warm-up: connections, the static host's threads
                        asyncio.run(
                            drive_observations(server.url, plans[side], concurrency, min(total, 48), parallel)
                        )
                    for i in range(rounds):
                        for side in sides if i % 2 == 0 else sides[::-1]:
                            r = asyncio.run(
                                drive_observations(
                                    server.url, plans[side], concurrency, total, parallel, server.proc.pid
                                )
                            )
                            measured[side].append(r)
                            errors += r[3]
                    rows.append((set_name, mode, concurrency, measured))
    finally:
        server.stop()
        static.shutdown()

    failed = errors > 0
    print(f"\n{rounds} rounds of {totals} photos per side and cell, in turns; medians over the rounds.")
    print("CPU ms/photo: the service process's CPU time per photo, all threads (of it on the event loop),")
    print("the figure least moved by other load on a shared machine; cpu ratio = pair / identify.")
    print(f"{'photos':<12} {'input':<7} {'conc':>4} | {'identify photo/s p50/p99 ms':>27} | "
          f"{'pair photo/s p50/p99 ms':>27} | {'id/pair':>12} {'paired':>6} | {'CPU ms/photo id':>15} "
          f"{'pair':>11} {'ratio':>5} | bench | id/pair per round")  # fmt: skip
    for set_name, mode, concurrency, measured in rows:
        med = {s: np.median(np.array([(*r[:3], *r[5:]) for r in measured[s]]), axis=0) for s in sides}
        ratio = float(med["identify"][0] / med["pair"][0])
        per_round = [a[0] / b[0] for a, b in zip(measured["identify"], measured["pair"], strict=True)]
        bench = np.median([r[4] for side in sides for r in measured[side]])
        verdict = "PASS" if ratio >= min_ratio else "FAIL"
        failed |= ratio < min_ratio

        def cell(m: np.ndarray) -> str:
            return f"{m[0]:7.1f} {m[1]:5.0f} / {m[2]:5.0f}"

        def cpu(m: np.ndarray) -> str:
            return f"{m[3]:5.1f} ({m[4]:4.1f})"

        print(f"{set_name:<12} {mode:<7} {concurrency:>4} | {cell(med['identify']):>27} | "
              f"{cell(med['pair']):>27} | {ratio:7.2f} {verdict} {np.median(per_round):6.2f} | "
              f"{cpu(med['identify']):>15} "
              f"{cpu(med['pair']):>11} {med['pair'][3] / med['identify'][3]:5.2f} | {bench:5.0%} | "
              + " ".join(f"{x:.2f}" for x in per_round))  # fmt: skip
    print(f"PASS: identify/pair (photos/s, medians) >= {min_ratio}; paired: the median of the rounds' ratios")
    print(f"\nThe ceiling, no HTTP ({ceiling_rounds} rounds in turns, {workers} worker threads, medians): "
          "Identifier.identify per photo (one decode, every model) vs a request per model")  # fmt: skip
    for name, ceiling in ceilings.items():
        med = {side: np.median(np.array(r), axis=0) for side, r in ceiling.items()}
        ident, pair = med["identify"], med["pair"]
        print(f"{name:<12} identify {ident[0]:6.1f} photo/s {ident[1]:5.1f} CPU ms | "
              f"pair {pair[0]:6.1f} photo/s {pair[1]:5.1f} CPU ms | identify/pair "
              f"{ident[0] / pair[0]:.2f} (CPU {pair[1] / ident[1]:.2f})")  # fmt: skip
    if errors:
        print(f"FAIL: {errors} requests did not answer 200 (log in {work})")
    print(f"took {time.monotonic() - started_all:.0f} s")
    return 1 if failed else 0


def model_level(path: Path) -> tuple[float, float]:
    import tensorflow as tf

    signature = tf.saved_model.load(str(path)).signatures["serving_default"]
    rates = []
    for batch in (1, 16):
        x = tf.constant(np.random.default_rng(0).random((batch, 299, 299, 3), dtype=np.float32))
        signature(images=x)
        started, done = time.perf_counter(), 0
        while time.perf_counter() - started < 5:
            signature(images=x)
            done += batch
        rates.append(done / (time.perf_counter() - started))
    return rates[0], rates[1]


if __name__ == "__main__":
    main()
