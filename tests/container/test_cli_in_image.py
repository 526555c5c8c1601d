"""Every command docs/cli.md ("Command line") lists for the image, run inside the lite image
as its own user (uid 10001), with ./volumes mounted read-only as the other container tests mount it
(models from download_volume.sh --from ../shared/models). Inputs are read-only mounts, outputs a
writable one; only link-gbif gets a network (the host's, to reach the tests' local fake GBIF).

`serve` is the image's CMD: the acceptance check starts it, waits for /health/ready through the
published port and compares `classify PHOTO` with POST /bird_url on that container."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.container.conftest import Podman, post_photo, report, world_readable_copy
from tests.fakes.gbif import FakeGbif
from tests.support.reference import leeds, samples
from tests.support.server import free_port
from tests.support.shared import SHARED

pytestmark = [pytest.mark.container, pytest.mark.shared]

USER = 10001
BIRDS = [s.path for s in samples(SHARED) if s.group == "birds"] if SHARED.is_dir() else []
Cli = Callable[..., subprocess.CompletedProcess[str]]


def classify_lines(stdout: str) -> list[tuple[str, str | None, str]]:
    """(scientific name, common name, score to 4 decimals) per result of `classify PHOTO`: the text
    form ("0.7188  Poecile atricapillus (Black-capped Chickadee)" a line), or a JSON one."""
    text = stdout.strip()
    if text.startswith(("{", "[")):
        body = json.loads(text)
        rows = body["results"] if isinstance(body, dict) else body
        return [(r["scientific_name"], r.get("common_name"), f"{r['score']:.4f}") for r in rows]
    line = re.compile(r"^(?P<score>\d\.\d{4})  (?P<name>[^()]+?)(?: \((?P<common>.*)\))?$")
    found = [m for m in map(line.match, text.splitlines()) if m]
    return [(m["name"], m["common"], m["score"]) for m in found]


@pytest.fixture(scope="module")
def cli(podman: Podman, lite_image: str, repo_volume: Path) -> Cli:
    """`python -m app ARGS` in a fresh container of the lite image, as the image's own user."""

    def run(*args: str, mounts: tuple[str, ...] = (), network: str = "none", **env: str):
        started = time.monotonic()
        result = podman.run(
            "run", "--rm", "--network", network, "--volume", f"{repo_volume}:/srv/volumes:ro",
            *(f"--volume={m}" for m in mounts), "--env=_TYPER_STANDARD_TRACEBACK=1",  # plain tracebacks
            *(f"--env={k}={v}" for k, v in env.items()),
            lite_image, "python", "-m", "app", *args, timeout=300, check=False,
        )  # fmt: skip
        seconds = time.monotonic() - started
        report(f"  in the image: app {args[0]:<13} exit {result.returncode}  {seconds:5.1f} s")
        stderr = "\n".join(line for line in result.stderr.splitlines() if not line.startswith('time="'))
        assert result.returncode == 0, f"app {' '.join(args)} -> {result.returncode}\n{stderr[-3000:]}"
        return result

    return run


@pytest.fixture(scope="module")
def work(artifacts: Path) -> Path:
    """Leeds photos, one folder per species: 3 species x 4 to build, a 4th species to add; and a
    folder the container's user may write to."""
    root = artifacts / "container" / "cli"
    shutil.rmtree(root, ignore_errors=True)
    by_species: dict[str, list[Path]] = {}
    for path, name in leeds(SHARED):
        by_species.setdefault(name, []).append(path)
    species = sorted(by_species)[:4]
    staging = root / "staging"
    for folder, chosen in (("build", species[:3]), ("more", species[3:])):
        for name in chosen:
            target = staging / folder / name.replace(" ", "_")
            target.mkdir(parents=True)
            for photo in by_species[name][:4]:
                shutil.copy(photo, target / photo.name)
    world_readable_copy(staging, root / "photos")
    shutil.rmtree(staging)
    (root / "out").mkdir()
    (root / "out").chmod(0o777)
    return root


def test_models_lists_the_real_models_ready(cli: Cli):
    body = json.loads(cli("models").stdout)
    rows = {row["name"]: row for row in (body["models"] if isinstance(body, dict) else body)}
    for name in ("aiy_birds_v1", "aiy_insects_v1", "aiy_insects_features"):
        assert rows[name]["state"] == "ready", rows.get(name)
    assert rows["aiy_birds_v1"]["num_classes"] == 965


def test_classify_in_the_image_equals_bird_url_on_a_served_container(
    podman: Podman, lite_image: str, repo_volume: Path, cli: Cli
):
    assert BIRDS, "no bird samples in ../shared/samples/labels.csv"
    port = free_port()
    name = podman.start(lite_image, repo_volume, port)  # its CMD: python -m app serve
    podman.wait_healthy(name)
    ready = httpx.get(f"http://127.0.0.1:{port}/health/ready", timeout=10)
    assert ready.status_code == 200, ready.text
    try:
        for photo in BIRDS:
            printed = cli(
                "classify", f"/srv/in/{photo.name}", "--model", "aiy_birds_v1",
                mounts=(f"{photo}:/srv/in/{photo.name}:ro",),
            ).stdout  # fmt: skip
            response = post_photo(f"http://127.0.0.1:{port}", "/bird_url", photo, top_k=5)
            assert response.status_code == 200, response.text
            served = [
                (r["scientific_name"], r.get("common_name"), f"{r['score']:.4f}")
                for r in response.json()["results"]
            ]
            assert len(served) == 5 and classify_lines(printed) == served, (photo.name, printed, served)
            report(f"  classify {photo.name} == /bird_url: {served[0][0]} {served[0][2]} (top-5 equal)")
    finally:
        podman.run("rm", "--force", "--time", "5", name, check=False)


def test_build_add_and_describe_an_index(cli: Cli, work: Path):
    mounts = (f"{work / 'photos'}:/srv/photos:ro", f"{work / 'out'}:/srv/out")
    built = cli(
        "build-index", "/srv/photos/build", "--out", "/srv/out/index", "--embedder", "aiy_insects_features",
        mounts=mounts,
    ).stdout  # fmt: skip
    assert "published" in built and "12 photos of 3 species" in built, built
    added = cli("add-to-index", "/srv/photos/more", "--index", "/srv/out/index", mounts=mounts).stdout
    assert "published" in added and "of 4 species" in added, added
    info = json.loads(cli("index-info", "/srv/out/index", mounts=mounts).stdout)
    assert info["n_species"] == 4 and info["n_vectors"] == 16, info
    assert info["embedder"]["name"] == "aiy_insects_features", info
    written = list((work / "out" / "index").rglob("*"))
    assert written and all(p.lstat().st_uid == USER for p in written), [
        (str(p), p.lstat().st_uid) for p in written if p.lstat().st_uid != USER
    ]


def test_link_gbif_against_the_local_fake(cli: Cli, work: Path, fake_gbif: FakeGbif):
    target = work / "out" / "insects_taxonomy.jsonl"
    printed = cli(
        "link-gbif", "--model", "aiy_insects_v1", "--out", "/srv/out/insects_taxonomy.jsonl",
        "--rate", "1000",
        mounts=(f"{work / 'out'}:/srv/out",), network="host",
        GBIF_API_URL=fake_gbif.base_url, GBIF_MAX_CONCURRENCY="16",
    ).stdout  # fmt: skip
    linked = re.search(r"(\d+) of (\d+) names linked", printed)
    assert linked, printed[-2000:]
    assert int(linked[1]) >= 950, printed[-2000:]  # measured 1003 (the fake has no trinomials: 18 unresolved)
    assert int(linked[2]) == 1021, printed[-2000:]
    rows = target.read_text().splitlines()
    assert len(rows) >= int(linked[1]) and target.stat().st_uid == USER
    report(f"  link-gbif: {linked[0]} (fake GBIF)")


def test_batch_in_the_image_writes_every_output_without_the_extras(cli: Cli, work: Path):
    """The lite image (no Ray, no frictionless, no Darwin Core library) runs `batch` over a
    folder of photos and writes its four outputs; a second run resumes with nothing to do."""
    mounts = (f"{work / 'photos'}:/srv/photos:ro", f"{work / 'out'}:/srv/out")
    args = (
        "batch", "/srv/photos/more", "--out", "/srv/out/batch", "--format", "csv,jsonl,camtrap-dp,dwca",
        "--lat", "53.81", "--lon", "-1.56", "--date", "2026-07-14",  # Leeds: a place for the deployment
    )  # fmt: skip
    first = cli(*args, "--no-progress", mounts=mounts).stderr
    assert "4 observations: 4 answered, 0 failed" in first, first
    lines = [json.loads(line) for line in (work / "out" / "batch" / "answers.jsonl").read_text().splitlines()]
    assert [line["results"][0]["model"] for line in lines] == ["aiy_insects_v1"] * 4
    assert (work / "out" / "batch" / "dwca.zip").is_file()
    descriptor = json.loads((work / "out" / "batch" / "camtrap-dp" / "datapackage.json").read_text())
    assert [r["name"] for r in descriptor["resources"]] == ["deployments", "media", "observations"]
    again = cli(*args, "--no-progress", mounts=mounts).stderr
    assert "(0 by this run" in again, again
