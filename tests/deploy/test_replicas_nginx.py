"""Two real uvicorn replicas behind a real nginx (Debian's, on loopback), configured by the same
deploy/nginx/species-id.conf that docker compose's scaled profile uses: requests spread over
both; one replica killed mid-load, and no request fails once nginx has dropped it."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.env import service_env
from tests.support.figures import figure
from tests.support.images import encode, photo
from tests.support.manifests import BIRDS, aiy_entry, plants_entry, write_manifest
from tests.support.nginx import BINARY, SETUP, Nginx
from tests.support.server import ServiceProcess
from tests.support.shared import HAS_SHARED, SHARED


@pytest.fixture(scope="module")
def nginx_binary() -> str:
    done = subprocess.run(["bash", *SETUP], capture_output=True, text=True, timeout=900)
    if done.returncode == 3:
        pytest.skip(f"no nginx: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    return BINARY


@pytest.fixture(scope="module")
def model(tmp_path_factory, request) -> tuple[Path, str, bytes]:
    """(manifest, route, photo): the real birds model, or the test-built SavedModel without ../shared."""
    folder = tmp_path_factory.mktemp("replicas")
    if HAS_SHARED:
        chickadee = (SHARED / "samples" / "Poecile_atricapillus_01.bmp").read_bytes()
        return write_manifest(folder / "models.toml", [aiy_entry(*BIRDS)]), "/bird_url", chickadee
    entry = plants_entry(
        request.getfixturevalue("plants_savedmodel"), request.getfixturevalue("plant_labels")
    )
    return write_manifest(folder / "models.toml", [entry]), "/plant_url", encode(photo(), "JPEG")


@pytest.fixture(scope="module")
def replicas(model, artifacts) -> Iterator[list[ServiceProcess]]:
    manifest = model[0]
    procs = [
        ServiceProcess(service_env(manifest, INFERENCE_WORKERS="1"), artifacts / f"replica-{i}.log")
        for i in range(2)
    ]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.stop()


@pytest.fixture(scope="module")
def balancer(nginx_binary, replicas, tmp_path_factory) -> Iterator[str]:
    with Nginx(tmp_path_factory.mktemp("nginx"), [r.port for r in replicas]) as nginx:
        yield nginx.url


def post(client: httpx.Client, route: str, image: bytes) -> httpx.Response:
    return client.post(route, files={"image": ("photo.jpg", image, "application/octet-stream")})


def test_requests_spread_over_both_replicas(balancer, replicas, model):
    _, route, image = model
    with httpx.Client(base_url=balancer, timeout=30) as client:
        served = [post(client, route, image) for _ in range(20)]
    assert all(r.status_code == 200 for r in served), [r.text for r in served if r.status_code != 200]
    upstreams = [r.headers["x-upstream"] for r in served]
    counts = {f"127.0.0.1:{r.port}": upstreams.count(f"127.0.0.1:{r.port}") for r in replicas}
    figure(f"nginx round robin over 2 replicas, 20 requests: {sorted(counts.values())}")
    assert all(n >= 5 for n in counts.values()), counts  # round robin: 10 and 10


def test_killing_a_replica_fails_no_request_once_dropped(balancer, replicas, model):
    _, route, image = model
    survivor = f"127.0.0.1:{replicas[1].port}"
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def load() -> None:
        with httpx.Client(base_url=balancer, timeout=30) as client:
            while not stop.is_set():
                try:
                    r = post(client, route, image)
                    results.append((time.monotonic(), r.status_code, r.headers.get("x-upstream", "")))
                except httpx.TransportError as exc:
                    results.append((time.monotonic(), 0, repr(exc)))

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(2)
    killed_at = time.monotonic()
    replicas[0].proc.send_signal(signal.SIGKILL)  # no goodbye: in-flight requests are cut
    time.sleep(4)
    stop.set()
    for t in threads:
        t.join(30)
    before = [r for r in results if r[0] < killed_at]
    after = [r for r in results if r[0] >= killed_at]
    failed = [r for r in after if r[1] != 200]
    figure(f"nginx, 2 replicas, one SIGKILLed mid-load: {len(after)} requests after, {len(failed)} failed")
    assert len(before) >= 10 and len(after) >= 10
    assert not failed  # nginx retried the cut and refused ones on the survivor
    dropped = [r for r in after if r[0] >= killed_at + 1.0]
    assert dropped and all(r[2] == survivor for r in dropped)  # straight to the survivor: A is marked down
