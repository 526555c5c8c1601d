"""link-gbif over the real insects label map against the fake GBIF, then taxonomy joined onto
/insect_url results and the rollup on a real photo whose score two Vanessa species split."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.fakes.gbif import FakeGbif
from tests.support.env import gbif_env
from tests.support.manifests import INSECTS, aiy_entry, write_manifest
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import MODELS, SHARED

pytestmark = pytest.mark.shared

LEEDS = SHARED / "datasets" / "leedsbutterfly" / "images"


def link(manifest: Path, fake: FakeGbif, cache: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **gbif_env(manifest, fake, cache)}
    return subprocess.run(
        [sys.executable, "-m", "app", "link-gbif", "--model", "aiy_insects_v1",
         "--rate", "500", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def linked(tmp_path_factory, fake_gbif) -> dict[str, Path]:
    fake = fake_gbif
    root = tmp_path_factory.mktemp("taxonomy")
    manifest = write_manifest(
        root / "models.toml", [{**aiy_entry(*INSECTS), "taxonomy": str(root / "taxa.jsonl")}]
    )
    names = [
        line.split(",", 1)[1]
        for line in (MODELS / "aiy_insects_v1" / "labelmap.csv").read_text().splitlines()[1:]
    ]
    fake.none_names = {names[0]}
    fake.fail_names = {names[1], names[2]}
    fake.hits.clear()
    cache = root / "gbif.sqlite"

    first = link(manifest, fake, cache)
    assert first.returncode == 1, first.stdout + first.stderr  # two names failed: rerun needed
    assert f"unresolved: {names[0]}: NONE" in first.stdout
    assert f"failed: {names[1]}: GBIF answered HTTP 500" in first.stdout
    lines = (root / "taxa.jsonl").read_text().splitlines()
    assert len(lines) == 1021 - 2  # background skipped; the failed two not written

    fake.fail_names = set()
    calls_before = sum(fake.hits.values())
    second = link(manifest, fake, cache)
    assert second.returncode == 0, second.stdout + second.stderr
    assert sum(fake.hits.values()) - calls_before == 2  # resumed: only the two failed names asked again
    assert "1019 resumed from the file" in second.stdout
    # Names GBIF cannot match exactly are listed, not guessed: the unknown one and the subspecies.
    assert f"unresolved: {names[0]}: NONE" in second.stdout
    assert "unresolved: Vanessa gonerilla gonerilla: NONE" in second.stdout
    return {"manifest": manifest, "taxa": root / "taxa.jsonl", "names": names}  # type: ignore[dict-item]


@pytest.fixture(scope="module")
def insect_service(linked, artifacts) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(
        {"MODELS_MANIFEST": str(linked["manifest"])}, artifacts / "taxonomy-service.log"
    ).start()
    yield proc
    proc.stop()


def classify(service: ServiceProcess, data: bytes) -> dict:
    response = httpx.post(f"{service.base_url}/insect_url", files={"image": ("p.png", data)}, timeout=60)
    assert response.status_code == 200, response.text
    return response.json()


def test_a_confident_answer_carries_its_taxon_and_no_rollup(insect_service):
    body = classify(insect_service, (LEEDS / "001_0001.jpg").read_bytes())  # Danaus plexippus
    top = body["results"][0]
    assert top["scientific_name"] == "Danaus plexippus" and top["score"] >= 0.8
    assert top["taxonomy"]["genus"] == "Danaus" and top["taxonomy"]["family"] == "Nymphalidae"
    assert top["taxonomy"]["matchType"] == "EXACT" and body["rollup"] is None


def test_when_two_vanessa_species_split_the_score_the_genus_is_reported(insect_service):
    """A real red admiral and a real painted lady photo, overlaid: the model hesitates between
    Vanessa species, and the rollup reports the genus it is sure of."""
    images = [
        Image.open(LEEDS / name).convert("RGB").resize((448, 448))
        for name in ("009_0003.jpg", "010_0001.jpg")
    ]
    buffer = io.BytesIO()
    Image.blend(*images, 0.5).save(buffer, "PNG")
    body = classify(insect_service, buffer.getvalue())
    vanessa = [r for r in body["results"] if r["scientific_name"].startswith("Vanessa ")]
    assert len(vanessa) >= 2 and body["results"][0]["score"] < 0.8
    rollup = body["rollup"]
    assert rollup["rank"] == "genus" and rollup["name"] == "Vanessa"
    assert rollup["score"] >= 0.8 and rollup["score"] >= sum(r["score"] for r in vanessa) - 1e-6
    assert rollup["usageKey"] == vanessa[0]["taxonomy"]["genusKey"]
