"""`python -m app classify`: one photo as text or as the server's JSON, a folder as a CSV, the
reasons it refuses, and that it runs without the training extra (as in the Docker image)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.runner import RESULT_LINE, ok, refused, run_cli, usage_error
from tests.support.env import service_env
from tests.support.server import ServiceProcess
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

SAMPLES = SHARED / "samples"
CHICKADEE = SAMPLES / "Poecile_atricapillus_01.bmp"
SUNFLOWER = SAMPLES / "Helianthus_annuus_02.bmp"  # no bird: the birds model finds no match
# What the server's answer and the CLI's --json must agree on (timings and the image's source differ).
COMPARED = ("model", "model_version", "results", "no_match", "no_match_reason", "background_score", "rollup")


@pytest.fixture(scope="module")
def server(real_manifest: Path, artifacts: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env(real_manifest), artifacts / "cli-classify-service.log").start()
    yield proc
    proc.stop()


def parsed(stdout: str) -> list[tuple[float, str, str | None]]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    found = [RESULT_LINE.match(line) for line in lines if not line.startswith("no match")]
    assert all(found), stdout
    return [(float(m["score"]), m["name"], m["common"]) for m in found if m]


def test_one_photo_prints_score_name_and_common_name(real_manifest):
    result = ok(run_cli("classify", CHICKADEE, "--model aiy_birds_v1", manifest=real_manifest))
    rows = parsed(result.stdout)
    assert len(rows) == 5
    assert rows[0][1:] == ("Poecile atricapillus", "Black-capped Chickadee") and rows[0][0] >= 0.5
    assert [score for score, _, _ in rows] == sorted((score for score, _, _ in rows), reverse=True)
    assert "no match" not in result.stdout

    shorter = ok(run_cli("classify", CHICKADEE, "--model aiy_birds_v1 --top-k 2", manifest=real_manifest))
    assert parsed(shorter.stdout) == rows[:2]


@pytest.mark.parametrize("photo", [CHICKADEE, SUNFLOWER], ids=["bird", "no-bird"])
def test_json_is_what_the_server_answers(photo, real_manifest, server):
    cli = ok(run_cli("classify", photo, "--model aiy_birds_v1 --json", manifest=real_manifest))
    mine = json.loads(cli.stdout)
    response = httpx.post(
        f"{server.base_url}/v1/classify/aiy_birds_v1",
        files={"image": (photo.name, photo.read_bytes())},
        params={"top_k": 5},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    served = response.json()
    assert {key: mine[key] for key in COMPARED} == {key: served[key] for key in COMPARED}
    assert mine["image"]["width"] == served["image"]["width"] and mine["image"]["source"] == "file"
    assert set(mine) == set(served)  # the same schema, timings included
    assert mine["no_match"] is (photo == SUNFLOWER)

    # The text form says the same.
    text = ok(run_cli("classify", photo, "--model aiy_birds_v1", manifest=real_manifest)).stdout
    expected = [(round(r["score"], 4), r["scientific_name"], r["common_name"]) for r in mine["results"]]
    assert parsed(text) == expected
    if mine["no_match"]:
        assert f"no match: {mine['no_match_reason']}" in text


def test_a_place_steers_classify_as_it_does_the_endpoint(real_manifest):
    """`--lat/--lon/--date/--geo` reach the same steering as the API's parameters: GBIF
    unreachable, the answer says so and is the model's own; geo=off ignores the place."""
    dead = {"GBIF_API_URL": "http://127.0.0.1:9/v1", "GEO_PRIOR_TIMEOUT": "1"}
    plain = json.loads(
        ok(run_cli("classify", CHICKADEE, "--model aiy_birds_v1 --json", manifest=real_manifest)).stdout
    )
    placed = "--model aiy_birds_v1 --json --lat 40.2 --lon -75.3 --date 2026-05-01"
    steered = json.loads(ok(run_cli("classify", CHICKADEE, placed, manifest=real_manifest, env=dead)).stdout)
    assert plain["geo"]["status"] == "not_requested"
    assert steered["geo"]["status"] in ("unavailable", "not_linked"), steered["geo"]
    assert steered["results"] == plain["results"]  # no prior to apply: the model's own answer
    off = json.loads(ok(run_cli("classify", CHICKADEE, placed, "--geo off", manifest=real_manifest)).stdout)
    assert off["geo"]["status"] == "off" and off["results"] == plain["results"]
    half = run_cli("classify", CHICKADEE, "--model aiy_birds_v1 --lat 40.2", manifest=real_manifest)
    assert refused(half) == "error: give --lat and --lon together"


def test_an_unreadable_photo_exits_2_with_the_reason(tmp_path, real_manifest):
    notes = tmp_path / "notes.jpg"
    notes.write_text("field notes, not a photo")
    result = run_cli("classify", notes, "--model aiy_birds_v1", manifest=real_manifest)
    assert refused(result).startswith("error: the data is not an image"), result.stderr
    assert result.stdout == ""


def test_an_unknown_or_missing_model_exits_2_with_the_reason(tmp_path, real_manifest):
    unknown = refused(run_cli("classify", CHICKADEE, "--model nope_v1", manifest=real_manifest))
    assert unknown == "error: no classifier named 'nope_v1'"
    # An embedder is no classifier.
    embedder = run_cli("classify", CHICKADEE, "--model aiy_insects_features", manifest=real_manifest)
    assert refused(embedder) == "error: no classifier named 'aiy_insects_features'"
    absent = run_cli("classify", tmp_path / "absent.jpg", "--model aiy_birds_v1", manifest=real_manifest)
    assert f"'{tmp_path / 'absent.jpg'}' does not exist" in usage_error(absent)


def test_classify_a_folder_to_csv(real_manifest, leeds_photos, tmp_path):
    """Every photo of a folder (recursive), batched; an unreadable file is listed, not fatal."""
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    chosen = leeds_photos[::50]  # 6 photos, 6 species
    for image, _ in chosen:
        (photos / image.name).symlink_to(image)
    (photos / "notes.jpg").write_text("field notes, not a photo")
    out = tmp_path / "results.csv"
    options = "--model aiy_insects_v1 --top-k 3 --no-progress"
    result = ok(run_cli("classify", tmp_path / "photos", options, "--out", out, manifest=real_manifest))
    assert "6 photos classified, 1 unreadable" in result.stderr
    assert "unreadable:" in result.stderr and "notes.jpg" in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 * 3 + 1
    firsts = {Path(r["path"]).name: r["scientific_name"] for r in rows if r["rank"] == "1"}
    assert sum(firsts[image.name] == name for image, name in chosen) >= 5
    assert next(r for r in rows if r["path"].endswith("notes.jpg"))["error"].startswith(
        "the data is not an image"
    )

    # Without --out, the same CSV on stdout.
    shown = ok(run_cli("classify", tmp_path / "photos", options, manifest=real_manifest))
    assert list(csv.DictReader(shown.stdout.splitlines())) == rows


def test_classify_runs_without_the_training_extra(real_manifest, without_training_extra, tmp_path):
    """The Docker image carries neither scikit-learn nor matplotlib: classify must not need them."""
    blocked = {"manifest": real_manifest, "env": without_training_extra}
    result = ok(run_cli("classify", CHICKADEE, "--model aiy_birds_v1 --json", **blocked))
    assert json.loads(result.stdout)["results"][0]["scientific_name"] == "Poecile atricapillus"
    folder = tmp_path / "photos"
    folder.mkdir()
    (folder / CHICKADEE.name).symlink_to(CHICKADEE)
    batch = ok(run_cli("classify", folder, "--model aiy_birds_v1 --no-progress", **blocked))
    assert "1 photos classified, 0 unreadable" in batch.stderr and "Poecile atricapillus" in batch.stdout
