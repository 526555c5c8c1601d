"""Overload and hostile images on a real server: excess requests get fast 503s while the admitted
ones finish; decompression bombs and broken files are refused without the memory growing."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.env import service_env
from tests.support.images import encode, photo, png_declaring
from tests.support.server import ServiceProcess


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


@pytest.fixture(scope="module")
def tight(manifest, artifacts) -> Iterator[ServiceProcess]:
    """One worker and a queue of two: three requests in the house at most."""
    env = service_env(manifest, INFERENCE_WORKERS="1", MAX_QUEUE="2", MAX_UPLOAD_BYTES="8000000")
    proc = ServiceProcess(env, artifacts / "tight-service.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def heavy_png() -> bytes:
    """24 Mpx that compress to half a megabyte: cheap to send, slow (~0.2 s) to decode."""
    y, x = np.mgrid[0:4000, 0:6000].astype(np.float32)
    rgb = np.stack([x / 6000 * 255, y / 4000 * 255, (x + y) / 10000 * 255], axis=-1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


def test_excess_requests_get_fast_503s_and_the_admitted_ones_finish(tight, heavy_png, artifacts):
    async def one(client: httpx.AsyncClient) -> tuple[int, float, str | None]:
        started = time.monotonic()
        response = await client.post("/plant_url", files={"image": ("big.png", heavy_png)})
        retry = response.headers.get("retry-after")
        return response.status_code, time.monotonic() - started, retry

    async def burst() -> list[tuple[int, float, str | None]]:
        async with httpx.AsyncClient(base_url=tight.base_url, timeout=120) as client:
            return await asyncio.gather(*(one(client) for _ in range(24)))

    results = asyncio.run(burst())
    ok = [r for r in results if r[0] == 200]
    shed = [r for r in results if r[0] == 503]
    assert len(ok) + len(shed) == 24, [r[0] for r in results]
    assert len(ok) >= 3 and len(shed) >= 12, (len(ok), len(shed))
    assert all(r[2] is not None for r in shed)  # Retry-After on every refusal
    fast = sorted(r[1] for r in shed)[len(shed) // 2]
    slow = sorted(r[1] for r in ok)[len(ok) // 2]
    line = (
        f"overload: 24 concurrent 24-Mpx uploads, capacity 3: {len(ok)} served (median {slow:.2f} s), "
        f"{len(shed)} refused 503 (median {fast:.3f} s)"
    )
    print(line)
    (artifacts / "overload_report.txt").write_text(line + "\n")
    assert fast < slow
    assert httpx.get(f"{tight.base_url}/health/ready").status_code == 200
    assert (
        httpx.post(
            f"{tight.base_url}/plant_url", files={"image": ("p.jpg", encode(photo(), "JPEG"))}
        ).status_code
        == 200
    )


def test_hostile_files_are_refused_and_memory_stays_bounded(tight):
    truncated = encode(photo(800, 600), "JPEG", quality=90)[:5000]
    cases = [
        ("bomb.png", png_declaring(30000, 30000), 413),
        ("wide.png", png_declaring(200_000, 400), 413),
        ("truncated.jpg", truncated, 422),
        ("empty.jpg", b"", 400),
        ("text.jpg", b"this is a text file, honestly a JPEG", 415),
        ("html.jpg", b"<html><body>not a photo</body></html>", 415),
    ]
    with httpx.Client(base_url=tight.base_url, timeout=30) as client:
        before = rss_mib(tight.proc.pid)
        for _ in range(10):
            for name, data, status in cases:
                response = client.post("/plant_url", files={"image": (name, data)})
                assert response.status_code == status, (name, response.text)
        grown = rss_mib(tight.proc.pid) - before
    # 30000 x 30000 RGB would be 2.5 GiB: refused from the header, never allocated.
    assert grown < 50, f"RSS grew {grown:.0f} MiB over 60 hostile uploads"


def test_an_animated_gif_uses_its_first_frame(tight):
    frames = [Image.new("RGB", (320, 240), colour) for colour in ("red", "green", "blue")]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    first = io.BytesIO()
    frames[0].save(first, "PNG")
    with httpx.Client(base_url=tight.base_url, timeout=30) as client:
        animated = client.post("/plant_url", files={"image": ("a.gif", buffer.getvalue())}).json()
        still = client.post("/plant_url", files={"image": ("f.png", first.getvalue())}).json()
    assert animated["image"]["format"] == "GIF"
    assert [r["index"] for r in animated["results"]] == [r["index"] for r in still["results"]]


def test_sigterm_lets_in_flight_requests_finish(manifest, heavy_png, artifacts):
    """Two uploads whose requests the server has begun (both written whole to their sockets, its
    parser given a moment) when SIGTERM arrives: both are answered 200 before it exits. Raw
    sockets, not a client in a thread: a thread that has not connected yet when the signal lands
    makes a request the server never began, which it rightly refuses."""
    import signal
    import socket
    import threading

    proc = ServiceProcess(service_env(manifest), artifacts / "shutdown-service.log").start()
    boundary = "shutdown-7d3f"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="image"; filename="big.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + heavy_png
        + f"\r\n--{boundary}--\r\n".encode()
    )
    request = (
        f"POST /plant_url HTTP/1.1\r\nHost: 127.0.0.1:{proc.port}\r\nConnection: close\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    sockets = [socket.create_connection(("127.0.0.1", proc.port), timeout=60) for _ in range(2)]
    replies: list[bytes] = [b"", b""]

    def receive(i: int) -> None:
        chunks = []
        while chunk := sockets[i].recv(65536):
            chunks.append(chunk)
        replies[i] = b"".join(chunks)

    writers = [threading.Thread(target=sock.sendall, args=(request,)) for sock in sockets]
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join(30)
    readers = [threading.Thread(target=receive, args=(i,)) for i in range(2)]
    for thread in readers:
        thread.start()
    time.sleep(0.1)  # the server's parser has the requests' heads: both are in flight
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGTERM)
    for thread in readers:
        thread.join(60)
    for sock in sockets:
        sock.close()
    assert [reply.split(b"\r\n", 1)[0] for reply in replies] == [b"HTTP/1.1 200 OK"] * 2, replies
    # uvicorn re-raises SIGTERM once it has shut down cleanly (as PID 1 in the image it exits 0).
    assert proc.proc.wait(30) in (0, -signal.SIGTERM)
