"""`serve --default-index` and `build-default-index`: a server started without a species index
says how to build one (its log and /health/ready's index_note, readiness not failed, /img_url
503 index_unavailable), and picks up the index the command then builds without a restart.
(tests/test_first_run.py runs the real `make serve`, which builds it from ../shared first.)"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest

from tests.cli.runner import command, ok, refused, run_cli
from tests.support.env import service_env
from tests.support.manifests import plants_entry, write_manifest
from tests.support.server import ServiceProcess, free_port
from tests.support.shared import SHARED

EXACT = "python -m app build-index PHOTOS_DIR --out {out} --embedder aiy_insects_features"


def serve(manifest: Path, index: Path, log: Path, *args: str) -> ServiceProcess:
    port = free_port()
    env = service_env(manifest, INDEX_DIR=str(index), LOG_LEVEL="info")
    return ServiceProcess(env, log, command=command("serve", f"--port {port}", *args), port=port).start()


def test_without_photos_the_server_serves_and_says_how_to_build_an_index(
    tmp_path, plants_savedmodel, plant_labels, artifacts
):
    manifest = write_manifest(tmp_path / "models.toml", [plants_entry(plants_savedmodel, plant_labels)])
    index = tmp_path / "index"
    proc = serve(
        manifest, index, artifacts / "serve-default-index-none.log",
        "--default-index auto", f"--photos {tmp_path / 'no-photos'}",
    )  # fmt: skip
    try:
        ready = httpx.get(f"{proc.base_url}/health/ready", timeout=10)
        lookup = httpx.post(f"{proc.base_url}/img_url", files={"image": ("a.jpg", b"x")}, timeout=10)
    finally:
        proc.stop()
    log = proc.log_path.read_text(errors="replace")  # the note comes first: all of it
    assert ready.status_code == 200, ready.text  # the classifiers serve: not a failure
    body = ready.json()
    assert body["status"] == "ready" and body["index"] == "absent"
    assert EXACT.format(out=index) in body["index_note"], body
    assert f"note: no photos at {tmp_path / 'no-photos'}" in log and EXACT.format(out=index) in log, log
    assert lookup.status_code == 503 and lookup.json()["error"]["code"] == "index_unavailable"
    assert not index.exists()


@pytest.mark.shared
def test_the_command_builds_the_default_index_and_the_running_server_serves_it(
    tmp_path, real_manifest, artifacts
):
    leeds = tmp_path / "leeds"  # the Leeds layout, 2 photos of each of 3 species
    (leeds / "images").mkdir(parents=True)
    (leeds / "descriptions").mkdir()
    source = SHARED / "datasets" / "leedsbutterfly"
    for n in (1, 2, 3):
        shutil.copy(source / "descriptions" / f"{n:03d}.txt", leeds / "descriptions")
        for i in (1, 2):
            (leeds / "images" / f"{n:03d}_{i:04d}.jpg").symlink_to(source / "images" / f"{n:03d}_{i:04d}.jpg")
    index = tmp_path / "index"
    env = {"INDEX_DIR": str(index)}
    proc = serve(real_manifest, index, artifacts / "serve-default-index-off.log")  # --default-index off
    try:
        before = httpx.get(f"{proc.base_url}/health/ready", timeout=10).json()
        assert before["index"] == "absent" and EXACT.format(out=index) in before["index_note"], before
        assert f"note: no species index in {index}" in proc.log_path.read_text(errors="replace")

        nothing = refused(
            run_cli("build-default-index", "--photos", tmp_path / "none", manifest=real_manifest, env=env)
        )
        assert "no photos at" in nothing and EXACT.format(out=index) in nothing, nothing
        built = ok(run_cli("build-default-index", "--photos", leeds, manifest=real_manifest, env=env)).stdout
        assert "6 photos of 3 species" in built and "embedder aiy_insects_features" in built, built
        kept = ok(run_cli("build-default-index", "--photos", leeds, manifest=real_manifest, env=env)).stdout
        assert "exists: kept as it is" in kept, kept

        after = httpx.get(f"{proc.base_url}/health/ready", timeout=10).json()  # no /img_url asked yet
        assert after["index"] == "ready" and after["index_note"] is None, after
        photo = source / "images" / "002_0001.jpg"
        answer = httpx.post(f"{proc.base_url}/img_url", files={"image": photo.read_bytes()}, timeout=60)
    finally:
        proc.stop()
    assert answer.status_code == 200, answer.text
    species = (source / "descriptions" / "002.txt").read_text(errors="replace").splitlines()[0]
    assert answer.json()["results"][0]["scientific_name"] == species
