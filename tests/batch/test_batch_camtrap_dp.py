"""`batch` over the Camtrap DP standard's own example package (../shared/datasets/camtrap-dp):
its 10 real camera-trap frames of a grey heron read from the package, a media row fetched from
a host (and one that 404s), the deployment's place, events; the package written back valid
against the standard's 1.0.2 schemas with the people's 549 observations kept, and the Darwin
Core Archive read back by python-dwca-reader. A URL to loopback is refused by the SSRF guard
unless private networks are allowed, as on the API."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.batch.outputs_support import camtrap_dp_errors, table
from tests.batch.test_batch_cli import answers, manifest  # noqa: F401  (the module's fixture)
from tests.cli.runner import ok, run_cli
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

CAMTRAP = SHARED / "datasets" / "camtrap-dp"
EXAMPLE = CAMTRAP / "example"
SCHEMAS = CAMTRAP / "schemas" / "1.0.2"
HERON_DEPLOYMENT = "62c200a9"


def example_copy(root: Path, elsewhere: str, extra: list[dict[str, str]]) -> Path:
    """A copy of the example package: its 10 local frames, its 413 other media moved to
    ``elsewhere`` (they are addresses no test may reach; the people's observations refer to
    them, so they stay), plus ``extra`` rows."""
    if not (EXAMPLE / "datapackage.json").is_file():
        pytest.skip(f"{CAMTRAP} not found: the Camtrap DP example is needed")
    package = root / "package"
    shutil.copytree(EXAMPLE, package)
    with (EXAMPLE / "media.csv").open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        fields = list(reader.fieldnames or [])
        rows = list(reader)
    local = [row for row in rows if not row["filePath"].startswith("http")]
    assert len(rows) == 423 and len(local) == 10 and {r["deploymentID"] for r in local} == {HERON_DEPLOYMENT}
    for row in rows:
        if row["filePath"].startswith("http"):
            row["filePath"] = elsewhere
    rows += [{**local[-1], **row} for row in extra]
    with (package / "media.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fields)
        writer.writeheader()
        writer.writerows(rows)
    return package


def media_row(media_id: str, url: str, second: int) -> dict[str, str]:
    return {
        "mediaID": media_id,
        "timestamp": f"2021-05-31T09:00:{second:02d}+02:00",
        "filePath": url,
        "fileName": url.rsplit("/", 1)[1],
    }


def deployment_place() -> tuple[float, float]:
    with (EXAMPLE / "deployments.csv").open(newline="", encoding="utf-8") as fh:
        row = next(r for r in csv.DictReader(fh) if r["deploymentID"] == HERON_DEPLOYMENT)
    return float(row["latitude"]), float(row["longitude"])


def test_the_example_package_in_and_a_valid_package_and_archive_out(manifest, image_host, tmp_path):  # noqa: F811
    fetched = image_host.url("/files/leeds/001_0027.jpg")  # a monarch, by address
    gone = image_host.url("/status/404")
    package = example_copy(
        tmp_path, gone, [media_row("fetched1", fetched, 0), media_row("missing1", gone, 30)]
    )
    out = tmp_path / "out"
    formats = "--format csv,jsonl,camtrap-dp,dwca"
    env = {"ALLOW_PRIVATE_NETWORKS": "true"}  # the image host is on loopback
    result = ok(run_cli("batch", package, "--out", out, formats, "--no-progress", manifest=manifest, env=env))
    assert "425 observations: 11 answered, 414 failed" in result.stderr, result.stderr

    lines = {line["observation"]: line for line in answers(out)}
    lat, lon = deployment_place()
    dates = {row["mediaID"]: row["timestamp"][:10] for row in table(package / "media.csv")}
    for media_id, line in lines.items():
        if "error" in line:
            assert "404" in line["error"], line
            continue
        assert line["place"]["source"] == "deployment", line["place"]
        assert (line["place"]["lat"], line["place"]["lon"]) == (lat, lon)
        assert line["place"]["date"] == dates[media_id]  # the media's timestamp
    assert lines["fetched1"]["results"][0]["scientific_name"] == "Danaus plexippus"

    assert camtrap_dp_errors(out / "camtrap-dp", SCHEMAS, tmp_path) == []
    written = table(out / "camtrap-dp" / "observations.csv")
    people = table(EXAMPLE / "observations.csv")
    assert written[: len(people)] == people  # the people's 549 observations, as they were
    machine = written[len(people) :]
    assert len(machine) == 11  # one per answered observation, none for the failed one
    assert all(row["classificationMethod"] == "machine" for row in machine)
    assert all(row["classifiedBy"].startswith(("aiy_birds_v1", "aiy_insects_v1")) for row in machine)
    types = {row["mediaID"]: row["observationType"] for row in machine}
    for media_id, line in lines.items():
        if "error" in line:
            continue
        named = (bool(line["results"]) and not line["no_match"]) or line["rollup"] is not None
        reason = line["no_match_reason"]
        expected = "animal" if named else "blank" if reason == "not_an_organism" else "unknown"
        assert types[media_id] == expected, (media_id, reason)
    descriptor = json.loads((out / "camtrap-dp" / "datapackage.json").read_text())
    taxa = {t["scientificName"] for t in descriptor["taxonomic"]}
    assert "Danaus plexippus" in taxa and "Ardea cinerea" in taxa  # the machine's and the people's

    from dwca.read import DwCAReader

    with DwCAReader(str(out / "dwca.zip")) as archive:
        rows: list[dict[str, Any]] = [
            {term.rsplit("/", 1)[1]: value for term, value in row.data.items()} for row in archive
        ]
    assert rows and all(row["basisOfRecord"] == "MachineObservation" for row in rows)
    monarch = next(row for row in rows if row["occurrenceID"] == "fetched1")
    assert monarch["scientificName"] == "Danaus plexippus"
    assert (float(monarch["decimalLatitude"]), float(monarch["decimalLongitude"])) == (lat, lon)
    assert monarch["identifiedBy"].startswith("aiy_insects_v1") and monarch["associatedMedia"] == fetched


def test_events_group_the_frames_and_a_loopback_address_is_refused_by_default(manifest, image_host, tmp_path):  # noqa: F811
    inside = image_host.url("/files/photo.jpg")
    package = example_copy(tmp_path, inside, [media_row("inside1", inside, 0)])
    out = tmp_path / "out"
    result = ok(
        run_cli(
            "batch", package, "--out", out, "--group-by", "event", "--format", "jsonl,camtrap-dp",
            "--no-progress", manifest=manifest,
        )
    )  # fmt: skip
    lines = answers(out)
    assert all(1 <= len(line["photos"]) <= 5 for line in lines)
    assert sum(len(line["photos"]) for line in lines) == 424
    refused = [line for line in lines if "error" in line]
    answered = [line for line in lines if "error" not in line]
    assert sum(len(line["photos"]) for line in answered) == 10  # the heron's frames, in events
    assert refused and all(line["error"].startswith(f"{inside}: ") for line in refused), refused[0]
    assert all("non-public address; refused" in line["error"] for line in refused), refused[0]
    assert "failed" in result.stderr
    assert camtrap_dp_errors(out / "camtrap-dp", SCHEMAS, tmp_path) == []
    machine = [
        r for r in table(out / "camtrap-dp" / "observations.csv") if r["classificationMethod"] == "machine"
    ]
    assert machine and all(
        r["observationLevel"] == "event" and r["eventID"] for r in machine if not r["mediaID"]
    )
