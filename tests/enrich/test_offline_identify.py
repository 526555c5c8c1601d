"""A first run with no network: the real birds and insects models, their shipped offline taxonomy
(NCBI Taxonomy, volumes/models/taxonomy/) and no link-gbif file, GBIF unreachable. Answers carry
the labels' higher ranks, taxon filters (by name at any rank, kingdoms by either taxonomy's name)
answer 200, and a rollup names a genus or family."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.enrich.taxonomy import read_linked
from app.models.manifest import load_manifest
from tests.support.env import service_env
from tests.support.figures import figure
from tests.support.manifests import BIRDS, INSECTS, SHIPPED_MANIFEST, aiy_entry, with_scope, write_manifest
from tests.support.server import ServiceProcess
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

MIXED = SHARED / "datasets" / "mixed"
# The last bird photos in name order: held out of the other tests of the answers' species.
HELD_OUT_BIRDS = sorted((MIXED / "images" / "birds").glob("*.*"))[-8:]
MONARCH = SHARED / "datasets" / "leedsbutterfly" / "images" / "001_0027.jpg"  # Danaus plexippus
# Two giant swallowtails the insects model splits between Heraclides rumiko and H. cresphontes.
SWALLOWTAIL_PAIR = [SHARED / "datasets" / "leedsbutterfly" / "images" / f"007_000{i}.jpg" for i in (4, 5)]
DEAD_GBIF = "http://127.0.0.1:9/v1"  # nothing listens on the discard port: every call fails at once


def shipped_offline(model: str) -> Path:
    manifest = load_manifest(SHIPPED_MANIFEST)
    spec = next(spec for spec in manifest.models if spec.name == model)
    assert spec.offline_taxonomy is not None
    return manifest.resolve(spec.offline_taxonomy, spec)


def entry(model: tuple[str, str, int, str], folder: Path) -> dict[str, Any]:
    """As volumes/models/models.toml declares it on a first run: link-gbif's file not yet there."""
    return with_scope(aiy_entry(*model)) | {
        "taxonomy": str(folder / f"{model[0]}_gbif_taxonomy.jsonl"),
        "offline_taxonomy": str(shipped_offline(model[0])),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[ServiceProcess]:
    folder = tmp_path_factory.mktemp("offline-taxonomy")
    manifest = write_manifest(folder / "models.toml", [entry(BIRDS, folder), entry(INSECTS, folder)])
    env = service_env(manifest, GBIF_API_URL=DEAD_GBIF, GBIF_CACHE_PATH=str(folder / "gbif.sqlite"))
    proc = ServiceProcess(env, artifacts / "offline-taxonomy-service.log").start()
    yield proc
    proc.stop()


def identify(server: ServiceProcess, photos: list[Path], **params: Any) -> dict[str, Any]:
    files = [("image", (p.name, p.read_bytes(), "application/octet-stream")) for p in photos]
    response = httpx.post(f"{server.base_url}/v1/identify", params=params, files=files, timeout=60)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def expected_families() -> dict[str, str]:
    """Photo file name -> the family of the species it shows, by the birds model's offline
    taxonomy of the label naming that species (photos of species the model lacks left out)."""
    taxa = {line.name: line.taxon for line in read_linked(shipped_offline("aiy_birds_v1"))}
    with (MIXED / "labels.csv").open(encoding="utf-8", newline="") as fh:
        rows = {Path(row["file"]).name: row["scientific_name"] for row in csv.DictReader(fh)}
    found = {}
    for photo in HELD_OUT_BIRDS:
        taxon = taxa.get(rows.get(photo.name, ""))
        if taxon is not None and taxon.family:
            found[photo.name] = taxon.family
    return found


def test_held_out_birds_answer_with_their_family_and_class_aves_offline(server):
    expected = expected_families()
    assert len(expected) >= 6, expected
    right = 0
    for photo in HELD_OUT_BIRDS:
        if photo.name not in expected:
            continue
        body = identify(server, [photo])
        best = body["results"][0]
        taxonomy = best["taxonomy"]
        assert best["model"] == "aiy_birds_v1" and taxonomy is not None, best
        assert taxonomy["class"] == "Aves" and taxonomy["kingdom"] == "Animalia", taxonomy
        assert taxonomy["source"] == "ncbi" and taxonomy["id"] == taxonomy["usageKey"], taxonomy
        assert taxonomy["ncbiKingdom"] == "Metazoa"
        right += taxonomy["family"] == expected[photo.name]
    assert right >= len(expected) - 1, f"{right} of {len(expected)} with the right family"
    figure(f"offline taxonomy: held-out birds answered with the right family {right}/{len(expected)}")


def test_a_monarch_answers_with_order_lepidoptera_and_filters_by_name(server):
    body = identify(server, [MONARCH])
    best = body["results"][0]
    assert (best["model"], best["scientific_name"]) == ("aiy_insects_v1", "Danaus plexippus")
    assert best["taxonomy"]["order"] == "Lepidoptera" and best["taxonomy"]["source"] == "ncbi"
    assert best["taxonomy"]["family"] == "Nymphalidae" and best["taxonomy"]["class"] == "Insecta"

    moths = identify(server, [MONARCH], taxon="Lepidoptera", top_k=20)
    assert moths["filters"]["taxon"]["name"] == "Lepidoptera" and moths["results"]
    assert {r["taxonomy"]["order"] for r in moths["results"]} == {"Lepidoptera"}
    assert moths["results"][0]["scientific_name"] == "Danaus plexippus"

    for kingdom in ("Metazoa", "Animalia"):  # either taxonomy's name; the answer shows GBIF's
        animals = identify(server, [MONARCH], taxon=kingdom)
        assert animals["filters"]["taxon"]["name"] == "Animalia" and animals["results"], animals
        assert animals["results"][0]["scientific_name"] == "Danaus plexippus"

    # The classic endpoint too: a taxon filter answers 200 where it said 409 with no taxonomy.
    files = {"image": (MONARCH.name, MONARCH.read_bytes())}
    classic = httpx.post(
        f"{server.base_url}/insect_url", params={"taxon": "Lepidoptera"}, files=files, timeout=60
    )
    assert classic.status_code == 200, classic.text
    assert {r["taxonomy"]["order"] for r in classic.json()["results"]} == {"Lepidoptera"}


def test_close_species_roll_up_to_their_genus_offline(server):
    body = identify(server, SWALLOWTAIL_PAIR, rollup_threshold=0.7)
    rollup = body["rollup"]
    assert rollup is not None and rollup["rank"] in ("genus", "family"), body
    assert rollup["name"] in ("Papilio", "Papilionidae") and rollup["source"] == "ncbi", rollup
    # NCBI files Heraclides as a subgenus of Papilio: the labels' genus field says so.
    top = {r["scientific_name"]: r["taxonomy"] for r in body["results"][:2]}
    assert set(top) == {"Heraclides rumiko", "Heraclides cresphontes"}
    assert all(t["genus"] == "Papilio" and t["matchType"] == "FALLBACK_GENUS" for t in top.values()), top
    assert all("its genus Heraclides" in t["fallback"] for t in top.values()), top
