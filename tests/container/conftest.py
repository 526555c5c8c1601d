"""The project's Dockerfile built and run for real with rootful podman (tests/container/setup_podman.sh
prepares the machine). Run with ``make test-container``; skipped, saying why, only where podman cannot
be installed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.support.server import REPO
from tests.support.shared import HAS_SHARED, MODELS

SETUP = REPO / "tests" / "container" / "setup_podman.sh"
LITE = "species-id:lite"  # the tag start_docker.sh and compose build: their builds reuse the cache
TF = "species-id-test:tf"
REPORT: list[str] = []


def report(line: str) -> None:
    REPORT.append(line)
    with (REPO / "test-artifacts" / "container_report.txt").open("a") as fh:
        fh.write(line + "\n")


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if REPORT:
        terminalreporter.section("container images")
        for line in REPORT:
            terminalreporter.write_line(line)


@dataclass
class Podman:
    env: dict[str, str]
    containers: list[str] = field(default_factory=list)

    def run(self, *args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["podman", *args], env=self.env, capture_output=True, text=True, timeout=timeout, cwd=REPO
        )
        if check and result.returncode != 0:
            raise AssertionError(f"podman {' '.join(args)} -> {result.returncode}\n{result.stderr[-3000:]}")
        return result

    def build(self, tag: str, variant: str) -> float:
        """Builds the Dockerfile unchanged; returns seconds and reports time, cache use and size."""
        started = time.monotonic()
        result = self.run(
            "build",
            "--format",
            "docker",
            "--build-arg",
            f"VARIANT={variant}",
            "--tag",
            tag,
            ".",
            timeout=1800,
        )
        seconds = time.monotonic() - started
        cached = result.stdout.count("Using cache")
        size = json.loads(self.run("image", "inspect", tag).stdout)[0]["Size"]
        base_image = "docker.io/library/python:3.11-slim"
        base = json.loads(self.run("image", "inspect", base_image).stdout)[0]["Size"]
        report(
            f"{tag:<20} {size / 1e6:7.0f} MB ({(size - base) / 1e6:.0f} MB above the base)   "
            f"built in {seconds:5.1f} s ({'cold' if cached == 0 else f'{cached} cached steps'})"
        )
        return seconds

    def start(self, image: str, volume: Path, port: int, *extra: str) -> str:
        name = f"species-id-test-{uuid.uuid4().hex[:8]}"
        self.containers.append(name)
        self.run(
            "run",
            "--detach",
            "--name",
            name,
            "--publish",
            f"127.0.0.1:{port}:8000",
            "--volume",
            f"{volume}:/srv/volumes:ro",
            *extra,
            image,
        )
        return name

    def wait_healthy(self, name: str, timeout: float = 180) -> None:
        """Runs the image's own HEALTHCHECK command (podman schedules it with systemd timers, which
        this machine lacks, so the test triggers it) until it passes."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.run("healthcheck", "run", name, check=False).returncode == 0:
                return
            state = json.loads(self.run("inspect", name).stdout)[0]["State"]
            if not state["Running"]:
                raise AssertionError(f"{name} exited {state['ExitCode']}:\n{self.logs(name)}")
            time.sleep(1)
        raise AssertionError(f"{name} not healthy after {timeout}s:\n{self.logs(name)}")

    def logs(self, name: str) -> str:
        result = self.run("logs", name, check=False)
        return (result.stdout + result.stderr)[-4000:]

    def state(self, name: str) -> dict[str, object]:
        return dict(json.loads(self.run("inspect", name).stdout)[0]["State"])

    def cleanup(self) -> None:
        for name in self.containers:
            self.run("rm", "--force", "--time", "5", name, check=False)


@pytest.fixture(scope="session")
def podman(artifacts: Path) -> Iterator[Podman]:
    (artifacts / "container_report.txt").write_text("")
    started = time.monotonic()
    try:
        result = subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, timeout=900)
    except FileNotFoundError:
        pytest.skip("bash not found: cannot run tests/container/setup_podman.sh")
    (artifacts / "setup_podman.log").write_text(result.stderr)
    if result.returncode == 3:
        pytest.skip(result.stderr.strip().splitlines()[-1])
    assert result.returncode == 0, result.stderr[-3000:]
    env = dict(os.environ)
    for line in Path(result.stdout.strip().splitlines()[-1]).read_text().splitlines():
        key, _, value = line.removeprefix("export ").partition("=")
        env[key] = value.strip('"')
    report(f"set-up (tests/container/setup_podman.sh): {time.monotonic() - started:.1f} s")
    engine = Podman(env)
    yield engine
    engine.cleanup()
    # Build stages are left as dangling images: reclaim their disk.
    engine.run("image", "prune", "--force", check=False, timeout=300)


@pytest.fixture(scope="session")
def lite_image(podman: Podman) -> str:
    podman.build(LITE, "lite")
    return LITE


@pytest.fixture(scope="session")
def tf_image(podman: Podman) -> Iterator[str]:
    podman.build(TF, "tf")
    yield TF
    podman.run("rmi", "--force", TF, check=False, timeout=300)


@pytest.fixture(scope="session")
def repo_volume() -> Path:
    """./volumes with the real models, installed the way a user does (download_volume.sh --from)."""
    if not HAS_SHARED:
        pytest.skip(f"{MODELS} not found: no real models to mount")
    result = subprocess.run(
        ["./download_volume.sh", "--from", str(MODELS)], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return REPO / "volumes"


def world_readable_copy(source: Path, dest: Path) -> Path:
    """The container runs as uid 10001: what it mounts must be readable by others (pytest's own
    temporary folders are 0700)."""
    shutil.rmtree(dest, ignore_errors=True)
    shutil.copytree(source, dest)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return dest


def post_photo(
    base_url: str, route: str, photo: Path | tuple[str, bytes], **params: object
) -> httpx.Response:
    upload = (photo.name, photo.read_bytes()) if isinstance(photo, Path) else photo
    return httpx.post(f"{base_url}{route}", files={"image": upload}, params=params, timeout=60)
