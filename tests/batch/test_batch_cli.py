"""`python -m app batch`: a collection on the real models, each observation answered as POST
/v1/identify answers it (a real server, same photos), resumable after kill -9, the photo's own
place, the refusals; on photos no other test reads (the last of each Leeds species, the last
mixed birds and no-organism photos)."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.test_identify import identify_manifest
from tests.cli.runner import cli_env, command, ok, refused, run_cli
from tests.support.env import service_env
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

LEEDS = SHARED / "datasets" / "leedsbutterfly" / "images"
MIXED = SHARED / "datasets" / "mixed" / "images"
GPS = SHARED / "datasets" / "exif-samples" / "gps"
# Photos the other tests do not read: each Leeds species' last photo, the last mixed birds and
# no-organism photos.
HELD_OUT = (
    [LEEDS / f"{n:03d}_0028.jpg" for n in range(1, 11)]
    + sorted((MIXED / "birds").glob("*.*"))[-6:]
    + sorted((MIXED / "other").glob("*.*"))[-2:]
)
# What must equal between two runs (the timings and the moment answered do not).
VOLATILE = ("timings_ms", "answered_at")


def stable(line: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in line.items() if k not in VOLATILE}


def answers(out: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (out / "answers.jsonl").read_text().splitlines()]


def journal_count(out: Path) -> int:
    path = out / "journal.sqlite"
    if not path.is_file():
        return 0
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=1) as db:
            return int(db.execute("SELECT count(*) FROM outcome").fetchone()[0])
    except sqlite3.OperationalError:  # the schema is not there yet
        return 0


def collection(root: Path, photos: list[Path]) -> Path:
    """A folder of copies (their names kept, under a species-like sub-folder)."""
    for photo in photos:
        target = root / photo.parent.name / photo.name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photo, target)
    return root


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identify_manifest(tmp_path_factory.mktemp("batch-models"))


@pytest.fixture(scope="module")
def server(manifest: Path, artifacts: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env(manifest), artifacts / "batch-service.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def held_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    missing = [p for p in HELD_OUT if not p.is_file()]
    if missing:
        pytest.skip(f"{SHARED} lacks {missing[0]}: the batch tests need the Leeds and mixed photos")
    return collection(tmp_path_factory.mktemp("held-out") / "photos", HELD_OUT)


@pytest.fixture(scope="module")
def clean_run(held_out: Path, manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("clean") / "out"
    result = ok(run_cli("batch", held_out, "--out", out, "--no-progress", manifest=manifest, timeout=600))
    assert f"{len(HELD_OUT)} observations: {len(HELD_OUT)} answered, 0 failed" in result.stderr, result.stderr
    return out


def test_each_photo_is_answered_once_as_v1_identify_answers_it(clean_run, held_out, server):
    lines = answers(clean_run)
    ids = [line["observation"] for line in lines]
    assert len(ids) == len(set(ids)) == len(HELD_OUT)
    assert ids == sorted(ids)  # the source's order: relative paths, sorted
    named = 0
    for line in lines:
        photo = held_out / line["observation"]
        assert [p["path"] for p in line["photos"]] == [line["observation"]]
        files = [("image", (photo.name, photo.read_bytes(), "application/octet-stream"))]
        theirs = httpx.post(f"{server.base_url}/v1/identify", files=files, timeout=60).json()
        for key in ("results", "no_match", "no_match_reason", "model", "models", "rollup", "geo", "place"):
            assert line[key] == theirs[key], (line["observation"], key)
        named += bool(line["results"]) and not line["no_match"]
    leeds = [line for line in lines if line["observation"].startswith("images/0")]
    assert len(leeds) == 10 and all(line["model"] == "aiy_insects_v1" for line in leeds)
    assert named >= 12, named  # measured: 14 of 18 named (10 butterflies, 4 of 6 birds)
    with (clean_run / "predictions.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {row["observation"] for row in rows} == set(ids)
    assert all(not row["error"] for row in rows)


def test_kill_9_loses_only_what_was_in_flight_and_a_rerun_ends_as_a_clean_run(
    clean_run, held_out, manifest, tmp_path
):
    out = tmp_path / "out"
    args = command("batch", held_out, "--out", out, "--no-progress", "--workers", "1")
    proc = subprocess.Popen(
        args, cwd=REPO, env=cli_env(manifest), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 300
        while journal_count(out) < 2 and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    killed_at = journal_count(out)
    assert 2 <= killed_at < len(HELD_OUT), f"killed after {killed_at} of {len(HELD_OUT)}: not mid-run"
    assert not (out / "answers.jsonl").exists()  # outputs come at the end, never half-written

    result = ok(run_cli("batch", held_out, "--out", out, "--no-progress", manifest=manifest, timeout=600))
    assert f"{len(HELD_OUT) - killed_at} by this run" in result.stderr, result.stderr
    assert journal_count(out) == len(HELD_OUT)
    assert [stable(a) for a in answers(out)] == [stable(a) for a in answers(clean_run)]
    assert (out / "predictions.csv").read_bytes() == (clean_run / "predictions.csv").read_bytes()

    again = ok(run_cli("batch", held_out, "--out", out, "--no-progress", manifest=manifest, timeout=600))
    assert "(0 by this run" in again.stderr, again.stderr  # nothing answered twice


def test_a_failed_photo_is_recorded_and_retried_only_when_asked(manifest, tmp_path):
    photos = collection(tmp_path / "photos", HELD_OUT[:2])
    broken = photos / "images" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    out = tmp_path / "out"
    first = ok(run_cli("batch", photos, "--out", out, "--no-progress", manifest=manifest))
    assert "3 observations: 2 answered, 1 failed" in first.stderr, first.stderr
    (failed,) = [line for line in answers(out) if "error" in line]
    assert failed["observation"] == "images/broken.jpg" and "corrupt" in failed["error"], failed

    shutil.copyfile(HELD_OUT[2], broken)  # mended
    kept = ok(run_cli("batch", photos, "--out", out, "--no-progress", manifest=manifest))
    assert "2 answered, 1 failed (0 by this run" in kept.stderr, kept.stderr
    retried = ok(run_cli("batch", photos, "--out", out, "--no-progress", "--retry-failed", manifest=manifest))
    assert "3 answered, 0 failed (1 by this run" in retried.stderr, retried.stderr
    assert len(answers(out)) == 3 and all("error" not in line for line in answers(out))


def test_the_place_comes_from_the_row_else_the_photo_and_never_invented(manifest, tmp_path):
    if not GPS.is_dir():
        pytest.skip(f"{GPS} not found: the EXIF samples are needed")
    gps = sorted(GPS.glob("*.jpg"))[:2]
    plain = HELD_OUT[0]  # no GPS in its EXIF
    table = tmp_path / "photos.csv"
    table.write_text(
        "observation,path,lat,lon,date\n"
        f"given,{gps[0]},51.5,-0.12,2024-05-01\n"
        f"from-photo,{gps[1]},,,\n"
        f"nowhere,{plain},,,\n"
    )
    out = tmp_path / "out"
    ok(run_cli("batch", table, "--out", out, "--no-progress", "--format", "csv,jsonl", manifest=manifest))
    place = {line["observation"]: line["place"] for line in answers(out)}
    assert place["given"] | {"problems": []} == {
        "lat": 51.5, "lon": -0.12, "date": "2024-05-01", "source": "row", "date_source": None, "problems": [],
    }  # fmt: skip
    assert place["from-photo"]["source"] == "photo" and place["from-photo"]["date"] == "2008-10-22"
    assert 43.46 < place["from-photo"]["lat"] < 43.47 and 11.87 < place["from-photo"]["lon"] < 11.89
    assert place["nowhere"]["lat"] is None and place["nowhere"]["source"] is None
    with (out / "predictions.csv").open(newline="") as fh:
        sources = {row["observation"]: row["place_source"] for row in csv.DictReader(fh)}
    assert sources == {"given": "row", "from-photo": "photo", "nowhere": ""}

    off = tmp_path / "off"
    ok(run_cli("batch", table, "--out", off, "--no-progress", "--no-photo-metadata", manifest=manifest))
    place = {line["observation"]: line["place"] for line in answers(off)}
    assert place["from-photo"]["lat"] is None and place["given"]["source"] == "row"


def test_what_it_refuses_and_that_nothing_written_is_lost(clean_run, held_out, manifest, tmp_path):
    assert "does not exist" in refused(
        run_cli("batch", tmp_path / "nope", "--out", tmp_path / "o", manifest=manifest)
    )
    no_column = tmp_path / "bad.csv"
    no_column.write_text("file,lat\nx.jpg,1\n")
    assert "path or url" in refused(run_cli("batch", no_column, "--out", tmp_path / "o2", manifest=manifest))
    package = tmp_path / "empty-package"
    package.mkdir()
    (package / "datapackage.json").write_text(
        json.dumps(
            {
                "resources": [
                    {"name": "deployments", "path": "deployments.csv"},
                    {"name": "media", "path": "media.csv"},
                ]
            }
        )
    )
    (package / "deployments.csv").write_text("deploymentID,latitude,longitude\nd1,51,4\n")
    (package / "media.csv").write_text("mediaID,deploymentID,timestamp,filePath,fileMediatype\n")
    assert "no media" in refused(run_cli("batch", package, "--out", tmp_path / "o3", manifest=manifest))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    assert "cannot write" in refused(run_cli("batch", held_out, "--out", blocker / "out", manifest=manifest))

    before = {p.name: p.read_bytes() for p in clean_run.iterdir() if p.is_file()}
    other = collection(tmp_path / "other", HELD_OUT[:1])
    assert "another source" in refused(run_cli("batch", other, "--out", clean_run, manifest=manifest))
    changed = refused(run_cli("batch", held_out, "--out", clean_run, "--top-k", "2", manifest=manifest))
    assert "other options (top_k)" in changed
    assert {p.name: p.read_bytes() for p in clean_run.iterdir() if p.is_file()} == before


def test_the_ray_engine_gives_the_local_rows_and_resumes_the_same_way(
    clean_run, held_out, manifest, tmp_path
):
    """On a local Ray cluster (2 actors): the same answers as the local engine; with three
    outcomes taken out of a finished journal, a Ray rerun answers those three alone."""
    pytest.importorskip("ray", reason="the ray extra is not installed")
    out = tmp_path / "ray"
    ray = ["--engine", "ray", "--workers", "2"]
    result = ok(
        run_cli("batch", held_out, "--out", out, "--no-progress", *ray, manifest=manifest, timeout=600)
    )
    assert f"{len(HELD_OUT)} answered, 0 failed" in result.stderr, result.stderr
    assert [stable(a) for a in answers(out)] == [stable(a) for a in answers(clean_run)]
    assert (out / "predictions.csv").read_bytes() == (clean_run / "predictions.csv").read_bytes()

    with sqlite3.connect(out / "journal.sqlite") as db:
        db.execute("DELETE FROM outcome WHERE seq IN (1, 7, 15)")
    resumed = ok(
        run_cli("batch", held_out, "--out", out, "--no-progress", *ray, manifest=manifest, timeout=600)
    )
    assert "(3 by this run" in resumed.stderr, resumed.stderr
    assert [stable(a) for a in answers(out)] == [stable(a) for a in answers(clean_run)]


def test_a_camtrap_dp_package_without_any_place_is_refused_and_the_rest_written(manifest, tmp_path):
    photos = collection(tmp_path / "photos", HELD_OUT[:2])  # no GPS in them, no --lat/--lon
    out = tmp_path / "out"
    result = run_cli(
        "batch", photos, "--out", out, "--format", "csv,camtrap-dp,dwca", "--no-progress", manifest=manifest
    )
    reason = refused(result)
    assert "camtrap-dp not written" in reason and "coordinates" in reason, reason
    assert (out / "predictions.csv").is_file() and (out / "dwca.zip").is_file()
    assert not (out / "camtrap-dp").exists()


def test_a_bad_group_or_taxon_stops_the_run_before_anything_is_recorded(manifest, tmp_path):
    """Checked once against the models, not a million times as failed observations."""
    photos = collection(tmp_path / "photos", HELD_OUT[:1])
    out = tmp_path / "out"
    reason = refused(run_cli("batch", photos, "--out", out, "--groups", "fungus", manifest=manifest))
    assert "fungus" in reason, reason
    assert journal_count(out) == 0  # nothing recorded: the same DIR takes the corrected command
    # Without a linked taxonomy (link-gbif), a taxon filter is refused the same way.
    assert "link-gbif" in refused(
        run_cli("batch", photos, "--out", out, "--taxon", "Aves", manifest=manifest)
    )
    ok(run_cli("batch", photos, "--out", out, "--groups", "insect", "--no-progress", manifest=manifest))
    assert journal_count(out) == 1


def test_one_run_per_dir_and_an_edited_source_is_another_source(manifest, tmp_path):
    import fcntl

    table = tmp_path / "photos.csv"
    table.write_text(f"path,lat,lon\n{HELD_OUT[0]},51.5,-0.12\n")
    out = tmp_path / "out"
    ok(run_cli("batch", table, "--out", out, "--no-progress", manifest=manifest))
    with (out / "journal.lock").open("a") as held:  # as a running batch holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        assert "another batch is running" in refused(run_cli("batch", table, "--out", out, manifest=manifest))
    table.write_text(f"path,lat,lon\n{HELD_OUT[0]},48.85,2.35\n")  # the same photo, another place
    assert "another source" in refused(run_cli("batch", table, "--out", out, manifest=manifest))
