"""Throughput per replica behind nginx, side by side in one run on this machine.

    .venv/bin/python benchmarks/replicas.py   # needs ../shared and nginx (see below)

The birds model, the real photos of benchmarks/serving.py, uploads at concurrency 16 over
keep-alive connections: one replica directly, one replica behind nginx
(deploy/nginx/species-id.conf), and two replicas behind it. On one machine the replicas share its
cores, so the figures show nginx's cost and how replicas split a machine; on separate machines
throughput adds up per replica.

nginx: bash tests/support/debian_package.sh /usr/sbin/nginx nginx-light
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.serving import BIRDS, BIRDS_MANIFEST, Server, drive, photo_sets, rss_mib, write_birds_manifest
from tests.support.nginx import BINARY, Nginx


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=480)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    if not (BIRDS / "model.tflite").exists() or not Path(BINARY).exists():
        sys.exit(
            "needs ../shared and nginx: bash tests/support/debian_package.sh /usr/sbin/nginx nginx-light"
        )
    work = Path(tempfile.mkdtemp(prefix="species-replicas-"))
    write_birds_manifest()
    photos = photo_sets(work)["real photos"]
    payloads: list[tuple[str, bytes | str]] = [(p.name, p.read_bytes()) for p in photos]
    env = {
        "MODELS_MANIFEST": str(BIRDS_MANIFEST),
        "MAX_QUEUE": "256",
        "GBIF_CACHE_PATH": str(work / "gbif.sqlite"),
        "INDEX_DIR": str(work / "index"),
    }
    uvicorn = [sys.executable, "-m", "uvicorn", "app.main:app"]
    replicas = [Server(uvicorn, env, work / f"replica-{i}.log") for i in range(2)]

    def run(url: str) -> tuple[float, float, float, int, float]:
        asyncio.run(drive(url, "/bird_url", payloads, args.concurrency, 32))  # warm-up
        return asyncio.run(drive(url, "/bird_url", payloads, args.concurrency, args.requests))

    rows = [("1 replica, direct", 1, run(replicas[0].url))]
    (work / "lb1").mkdir()
    with Nginx(work / "lb1", [replicas[0].port]) as lb:
        rows.append(("1 replica behind nginx", 1, run(lb.url)))
    (work / "lb2").mkdir()
    with Nginx(work / "lb2", [r.port for r in replicas]) as lb:
        rows.append(("2 replicas behind nginx", 2, run(lb.url)))
    rss = [rss_mib(r.proc.pid) for r in replicas]
    for replica in replicas:
        replica.stop()

    print(f"{os.cpu_count()} CPUs; {len(photos)} real photos by upload, concurrency {args.concurrency}, "
          f"{args.requests} requests per row\n")  # fmt: skip
    print(f"{'setup':<26} | {'img/s':>6} | {'per replica':>11} | {'p50 ms':>6} | {'p99 ms':>6} | errors")
    for name, n, (rate, p50, p99, errors, _) in rows:
        print(f"{name:<26} | {rate:6.1f} | {rate / n:11.1f} | {p50:6.0f} | {p99:6.0f} | {errors}")
    print(
        f"\nnginx / direct: {rows[1][2][0] / rows[0][2][0]:.2f}; 2 replicas / 1 (same 2 cores): "
        f"{rows[2][2][0] / rows[1][2][0]:.2f}; RSS per replica {rss[0]:.0f} / {rss[1]:.0f} MiB"
    )


if __name__ == "__main__":
    main()
