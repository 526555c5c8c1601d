"""`python -m app identify`: one observation as text or as the server's /v1/identify JSON, a folder
of observations (one sub-folder each) as a CSV, and the reasons it refuses, on the real models
with their shipped calibrations."""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.api.test_identify import (
    CHICKADEE,
    DRAGONFLY,
    LEEDS,
    MONARCHS,
    NO_ORGANISM,
    SUNFLOWER,
    identify_entry,
    identify_manifest,
)
from tests.cli.runner import first_of_each, ok, refused, run_cli, species_folders, usage_error
from tests.support.env import service_env
from tests.support.manifests import BIRDS, INSECTS, insects_features_entry, write_manifest
from tests.support.server import ServiceProcess

pytestmark = pytest.mark.shared

# One result line: "0.9660  Poecile atricapillus (Black-capped Chickadee)  [aiy_birds_v1]".
RESULT_LINE = re.compile(
    r"^(?P<score>\d\.\d{4})  (?P<name>[^()\[\]]+?)(?: \((?P<common>[^()]*)\))?  \[(?P<model>[\w.-]+)\]$"
)
# What the CLI's --json and the server's answer must agree on (timings and the photos' source differ).
COMPARED = ("results", "no_match", "no_match_reason", "model", "group", "why", "models", "rollup", "geo")
# None without ../shared: every test here is then skipped (the `shared` marker, tests/conftest.py).
ASTRONAUT = next((p for p in NO_ORGANISM if p.stem == "astronaut_01"), None)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return identify_manifest(tmp_path_factory.mktemp("cli-identify"))


@pytest.fixture(scope="module")
def server(manifest: Path, artifacts: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env(manifest), artifacts / "cli-identify-service.log").start()
    yield proc
    proc.stop()


def served(server: ServiceProcess, photos: list[Path]) -> dict:
    files = [("image", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
    response = httpx.post(f"{server.base_url}/v1/identify", files=files, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def results(stdout: str) -> list[tuple[float, str, str | None, str]]:
    found = [RESULT_LINE.match(line) for line in stdout.splitlines()]
    return [(float(m["score"]), m["name"], m["common"], m["model"]) for m in found if m]


@pytest.mark.parametrize(
    ("photo", "species", "common", "model"),
    [
        (CHICKADEE, "Poecile atricapillus", "Black-capped Chickadee", "aiy_birds_v1"),
        (DRAGONFLY, "Micrathyria hagenii", "Thornbush Dasher", "aiy_insects_v1"),
    ],
    ids=["chickadee", "dragonfly"],
)
def test_a_photo_prints_its_species_with_the_model_that_named_it(manifest, photo, species, common, model):
    result = ok(run_cli("identify", photo, manifest=manifest))
    rows = results(result.stdout)
    # At most the default top_k (5), none under 1/1000 of the best (the chickadee lists 2).
    assert 1 <= len(rows) <= 5 and all(row[0] >= rows[0][0] / 1000 for row in rows), result.stdout
    assert rows[0][1:] == (species, common, model) and rows[0][0] >= 0.5, result.stdout
    assert all(row[3] == model for row in rows)
    assert [row[0] for row in rows] == sorted((row[0] for row in rows), reverse=True)
    assert f"why: {model} fits best" in result.stdout and "no match" not in result.stdout


def test_a_photo_no_model_covers_says_no_match_and_names_no_species(manifest):
    result = ok(run_cli("identify", SUNFLOWER, manifest=manifest))
    assert results(result.stdout) == [], result.stdout
    assert re.search(r"^no match: (out_of_scope|not_an_organism)$", result.stdout, re.M), result.stdout


@pytest.mark.parametrize(
    "photos", [[CHICKADEE], [SUNFLOWER], MONARCHS], ids=["chickadee", "sunflower", "three-monarchs"]
)
def test_json_is_what_the_server_answers(manifest, server, photos):
    mine = json.loads(ok(run_cli("identify", *photos, "--json", manifest=manifest)).stdout)
    theirs = served(server, photos)
    for key in COMPARED:
        assert mine[key] == theirs[key], key
    assert [p["source"] for p in mine["photos"]] == ["file"] * len(photos)
    assert [(p["width"], p["height"], p["bytes"]) for p in mine["photos"]] == [
        (p["width"], p["height"], p["bytes"]) for p in theirs["photos"]
    ]


def test_a_folder_of_observations_becomes_a_csv_row_per_answer(manifest, server, tmp_path):
    observations = {
        "monarch": MONARCHS,
        "postman": [LEEDS / "003_0001.jpg", LEEDS / "003_0002.jpg"],  # Heliconius erato
        "swallowtail": [LEEDS / f"007_000{i}.jpg" for i in (1, 2, 3)],  # Heraclides cresphontes
        "nothing": [ASTRONAUT],
    }
    folder = tmp_path / "observations"
    for name, photos in observations.items():
        (folder / name).mkdir(parents=True)
        for photo in photos:
            (folder / name / photo.name).symlink_to(photo)
    (folder / "notes.txt").write_text("not an observation")  # files beside the sub-folders are skipped
    out = tmp_path / "answers.csv"

    result = ok(run_cli("identify", folder, "--out", out, "--top-k 3 --no-progress", manifest=manifest))
    assert "4 observations identified, 0 failed" in result.stderr, result.stderr
    with out.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    by_observation: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_observation.setdefault(row["observation"], []).append(row)
    assert list(by_observation) == sorted(observations)  # every observation, in name order

    expected = {
        "monarch": "Danaus plexippus",
        "postman": "Heliconius erato",
        "swallowtail": "Heraclides cresphontes",
    }
    for name, species in expected.items():
        answer = by_observation[name]
        ranks = [row["rank"] for row in answer]  # --top-k 3, and no species under 1/1000 of the best
        assert 1 <= len(ranks) <= 3 and ranks == [str(r) for r in range(1, len(ranks) + 1)], answer
        assert answer[0]["scientific_name"] == species and answer[0]["model"] == "aiy_insects_v1", answer
        assert all(not row["error"] and not row["no_match_reason"] for row in answer)
        theirs = served(server, observations[name])["results"][0]
        assert (answer[0]["scientific_name"], answer[0]["score"]) == (
            theirs["scientific_name"],
            f"{theirs['score']:.6f}",
        )
    (nothing,) = by_observation["nothing"]
    assert nothing["no_match_reason"] == "not_an_organism" and not nothing["scientific_name"], nothing


def test_what_it_refuses(manifest, tmp_path):
    six = [LEEDS / f"001_000{i}.jpg" for i in range(1, 7)]
    assert "1 to 5 photos, not 6" in refused(run_cli("identify", *six, manifest=manifest))
    assert "--lat and --lon together" in refused(
        run_cli("identify", CHICKADEE, "--lat 51.5", manifest=manifest)
    )
    assert "--lat and --lon together" in refused(
        run_cli("identify", CHICKADEE, "--lon -0.1", manifest=manifest)
    )
    for date in ("2026-13-40", "yesterday"):
        reason = refused(run_cli("identify", CHICKADEE, f"--date {date}", manifest=manifest))
        assert date in reason and "ISO date" in reason, reason
    assert "--lat" in usage_error(run_cli("identify", CHICKADEE, "--lat 91 --lon 0", manifest=manifest))
    broken = tmp_path / "broken.jpg"
    jpeg = MONARCHS[0].read_bytes()
    broken.write_bytes(jpeg[: len(jpeg) // 3])  # truncated
    reason = refused(run_cli("identify", CHICKADEE, broken, manifest=manifest))
    assert "photo 2" in reason and "broken.jpg" in reason, reason


def test_json_reports_the_species_index_answer_as_the_endpoint_does(leeds_photos, tmp_path, artifacts):
    """`identify --json` gets its services from the server's own wiring: with an index served
    (INDEX_DIR), its answer carries the index's vote, the same as POST /v1/identify's."""
    manifest = write_manifest(
        tmp_path / "models.toml", [identify_entry(BIRDS), identify_entry(INSECTS), insects_features_entry()]
    )
    build = first_of_each(leeds_photos, species=3, per_species=6)
    index = tmp_path / "index"
    options = "--embedder aiy_insects_features --dims 8 --no-progress"
    ok(
        run_cli(
            "build-index",
            species_folders(tmp_path / "build", build),
            "--out",
            index,
            options,
            manifest=manifest,
        )
    )
    species = build[0][1]
    photo = next(p for p, name in leeds_photos if name == species and (p, name) not in build)  # not indexed

    cli = json.loads(
        ok(run_cli("identify", photo, "--json", manifest=manifest, env={"INDEX_DIR": str(index)})).stdout
    )
    proc = ServiceProcess(
        service_env(manifest, INDEX_DIR=str(index)), artifacts / "cli-identify-index.log"
    ).start()
    try:
        endpoint = served(proc, [photo])
    finally:
        proc.stop()
    assert cli["index"] is not None and endpoint["index"] is not None
    assert cli["index"]["results"][0]["scientific_name"] == species, cli["index"]
    assert cli["index"]["results"] == endpoint["index"]["results"]
    assert cli["index"]["index"]["version"] == endpoint["index"]["index"]["version"]
