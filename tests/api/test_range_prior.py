"""The geo prior from a range table over real HTTP, with GBIF out of reach: a generated SIMPLE_CSV
download (zipped, as gbif.org hands it out) goes through `python -m app build-range`, and a real
server with GEO_PRIOR_SOURCE=table and GBIF_API_URL at a dead port answers POST /v1/identify on a
Leeds monarch (the real insects model, no taxonomy linked: labels matched by name) with
``geo.source`` ``table``: the monarch's ``geo_records`` are the download's records of it in the
photo's cell over the month and its neighbours (> 0), 0 out of season, and 0 for every species
(no error) where no record is near. With the shipped NCBI taxonomy, a GBIF species whose key is
the monarch's NCBI taxid is never counted as the monarch."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.env import service_env
from tests.support.figures import figure
from tests.support.manifests import INSECTS, aiy_entry, with_scope, write_manifest
from tests.support.occurrences import Occurrence, synthetic, write_simple_csv
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

MONARCH_PHOTO = SHARED / "datasets" / "leedsbutterfly" / "images" / "001_0027.jpg"  # Danaus plexippus
MONARCH_KEY, MONARCH_TAXID = 5133088, 13037  # GBIF's speciesKey; NCBI's taxid (the shipped taxonomy's)
PHILADELPHIA = (40.2, -75.3)  # the download's monarchs: cell 40..41 / -76..-75
NOWHERE = (-45.0, 100.0)  # the southern Indian Ocean: no record near
DECOY = (10.5, 10.5)  # a GBIF species whose speciesKey is the monarch's NCBI taxid
OFFLINE_TAXONOMY = REPO / "volumes" / "models" / "taxonomy" / "aiy_insects_v1.ncbi.jsonl"
DEAD_GBIF = "http://127.0.0.1:9/v1"  # the discard port: nothing listens


def download_records() -> list[Occurrence]:
    monarchs = {5: 3, 6: 12, 7: 25, 8: 18, 9: 6}  # per month, in the Philadelphia cell
    out = [
        Occurrence.of("Danaus plexippus", MONARCH_KEY, 40.0 + i / 100, -75.9 + i / 100, month)
        for month, n in monarchs.items()
        for i in range(n)
    ]
    out += [Occurrence.of("Danaus plexippus", MONARCH_KEY, *PHILADELPHIA)] * 4  # undated
    out += [Occurrence.of("Danaus plexippus", MONARCH_KEY, *PHILADELPHIA, 7, status="ABSENT")] * 50
    out += [Occurrence.of("Danaus plexippus", MONARCH_KEY, 0.0, 0.0, 7, issue="ZERO_COORDINATE")] * 50
    out += [Occurrence.of("Vanessa cardui", 1898286, *PHILADELPHIA, 7)] * 9
    out += [Occurrence.of("Decoyus taxidi", MONARCH_TAXID, *DECOY, 7)] * 40
    return out + list(synthetic(5000, species=300, seed=25))  # the rest of the world


EXPECTED_JULY = 12 + 25 + 18  # June, July, August


@dataclass
class RangeServer:
    proc: ServiceProcess
    table: Path
    built: str  # what build-range printed
    ncbi: bool  # the NCBI-linked copy of the insects model is served (its group: offline)

    @property
    def base_url(self) -> str:
        return self.proc.base_url


def offline_entry() -> dict[str, Any] | None:
    """The insects model again, classified by the shipped NCBI taxonomy, where this tree has it."""
    from app.models.manifest import ModelSpec

    if "offline_taxonomy" not in ModelSpec.model_fields or not OFFLINE_TAXONOMY.is_file():
        return None
    entry = with_scope(aiy_entry(*INSECTS))
    return entry | {
        "name": "aiy_insects_ncbi",
        "group": "offline",
        "offline_taxonomy": str(OFFLINE_TAXONOMY),
    }


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[RangeServer]:
    root = tmp_path_factory.mktemp("range-prior")
    source = write_simple_csv(root / "0001234-260101120000000.zip", download_records(), zipped=True)
    table = root / "range.sqlite"
    built = subprocess.run(
        [sys.executable, "-m", "app", "build-range", str(source), "--out", str(table), "--no-progress"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stdout + built.stderr
    entries = [with_scope(aiy_entry(*INSECTS))]
    ncbi = offline_entry()
    if ncbi is not None:
        entries.append(ncbi)
    manifest = write_manifest(root / "models.toml", entries)
    env = service_env(
        manifest,
        GEO_PRIOR_SOURCE="table",
        GEO_PRIOR_TABLE=str(table),
        GBIF_API_URL=DEAD_GBIF,
        GBIF_CACHE_PATH=str(root / "gbif.sqlite"),
        GBIF_TOTAL_TIMEOUT="1",
    )
    proc = ServiceProcess(env, artifacts / "range-prior-service.log").start()
    try:
        yield RangeServer(proc, table, built.stdout, ncbi is not None)
    finally:
        proc.stop()


def identify(server: RangeServer, **params: Any) -> dict[str, Any]:
    files = [("image", (MONARCH_PHOTO.name, MONARCH_PHOTO.read_bytes(), "image/jpeg"))]
    response = httpx.post(
        f"{server.base_url}/v1/identify", params={"top_k": 10, **params}, files=files, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["scientific_name"]: r for r in body["results"]}


def test_build_range_kept_the_download_and_said_what_it_skipped(server):
    assert (
        "kept " in server.built
        and "  not_present: " in server.built
        and "  geospatial_issue: 50" in server.built
    )


def test_the_table_gives_the_monarch_its_records_in_the_cell_and_season(server):
    started = time.perf_counter()
    body = identify(server, lat=PHILADELPHIA[0], lon=PHILADELPHIA[1], date="2026-07-15", groups="insect")
    elapsed_ms = (time.perf_counter() - started) * 1000
    geo = body["geo"]
    assert geo["status"] == "applied" and geo["source"] == "table" and geo["reason"] is None, geo
    assert geo["months"] == [6, 7, 8] and geo["cache"] is None and geo["mode"] == "prior"
    assert geo["cell"] == {"south": 40.0, "north": 41.0, "west": -76.0, "east": -75.0, "month": 7}
    assert body["results"][0]["scientific_name"] == "Danaus plexippus", body["results"][:3]
    results = by_name(body)
    monarch = results["Danaus plexippus"]
    assert monarch["geo_records"] == EXPECTED_JULY > 0  # absences and flagged records left out
    assert monarch["geo_weight"] == pytest.approx(0.1 + 0.9 * EXPECTED_JULY / (EXPECTED_JULY + 5.0))
    if "Vanessa cardui" in results:
        assert results["Vanessa cardui"]["geo_records"] == 9
    assert geo["cell_records"] >= EXPECTED_JULY + 9
    figure(f"/v1/identify, geo prior from a range table (GBIF dead): {elapsed_ms:.0f} ms, first in the cell")

    january = identify(server, lat=40.9, lon=-75.1, date="2026-01-10", groups="insect")  # same cell
    assert january["geo"]["status"] == "applied" and january["geo"]["months"] == [1, 2, 12]
    assert by_name(january)["Danaus plexippus"]["geo_records"] == 0  # out of season

    undated = identify(server, lat=PHILADELPHIA[0], lon=PHILADELPHIA[1], groups="insect")
    assert undated["geo"]["months"] is None
    assert by_name(undated)["Danaus plexippus"]["geo_records"] == 3 + 12 + 25 + 18 + 6 + 4  # every month


def test_a_place_no_record_is_near_gives_zero_records_not_an_error(server):
    vision = identify(server, groups="insect")
    body = identify(server, lat=NOWHERE[0], lon=NOWHERE[1], date="2026-07-15", groups="insect")
    geo = body["geo"]
    assert geo["status"] == "applied" and geo["source"] == "table" and geo["cell_records"] == 0, geo
    assert all(r["geo_records"] == 0 and r["geo_weight"] == pytest.approx(0.1) for r in body["results"])
    # Every species at the floor: the prior changes no score.
    assert [r["scientific_name"] for r in body["results"]] == [
        r["scientific_name"] for r in vision["results"]
    ]
    for weighed, alone in zip(body["results"], vision["results"], strict=True):
        assert weighed["score"] == pytest.approx(alone["score"], abs=1e-6)


def test_with_the_offline_taxonomy_labels_match_by_name_never_by_ncbi_taxid(server):
    if not server.ncbi:
        pytest.skip("this tree has no shipped NCBI taxonomy (offline_taxonomy) for the insects model")
    body = identify(server, lat=PHILADELPHIA[0], lon=PHILADELPHIA[1], date="2026-07-15", groups="offline")
    monarch = by_name(body)["Danaus plexippus"]
    assert monarch["taxonomy"]["source"] == "ncbi" and monarch["taxonomy"]["usageKey"] == MONARCH_TAXID
    assert body["geo"]["source"] == "table" and monarch["geo_records"] == EXPECTED_JULY
    decoy = identify(server, lat=DECOY[0], lon=DECOY[1], date="2026-07-15", groups="offline")
    assert decoy["geo"]["status"] == "applied" and decoy["geo"]["cell_records"] == 40
    assert by_name(decoy)["Danaus plexippus"]["geo_records"] == 0  # the taxid 13037 is no GBIF key
