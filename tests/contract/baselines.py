"""What the contract baselines hold and how they are made: the app's OpenAPI document, and the
classic endpoints' answers on real photos (the requests, the server they go to, what is kept of
each answer). ``tests.contract.refresh`` writes the baselines with this code; the tests send the
same requests to the current tree and compare."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx

from tests.support.env import service_env
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, with_scope, write_manifest
from tests.support.server import ServiceProcess

HERE = Path(__file__).resolve().parent
OPENAPI_BASELINE = HERE / "openapi_baseline.json"
CLASSIC_BASELINE = HERE / "classic_baseline.json"


def current_openapi() -> dict[str, Any]:
    """The OpenAPI document of the app in this tree (creating the app loads no model)."""
    from app.main import create_app

    return create_app().openapi()


# --- the classic endpoints on real photos --------------------------------------------------------

# Relative to the shared folder (../shared).
LEEDS = "datasets/leedsbutterfly/images"
MIXED = "datasets/mixed/images"
PHOTOS = (
    # Leeds butterflies: the first photo of each of the 10 species, and the giant swallowtail pair
    # the insects model splits between Heraclides rumiko and H. cresphontes (a near tie).
    *(f"{LEEDS}/{category:03d}_0001.jpg" for category in range(1, 11)),
    f"{LEEDS}/007_0004.jpg",
    f"{LEEDS}/007_0005.jpg",
    # Mixed birds: every 7th of the 55 in name order, and the one PNG.
    *(
        f"{MIXED}/birds/{name}_01.jpg"
        for name in (
            "Acanthis_flammea",
            "Branta_canadensis",
            "Columba_livia_domestica",
            "Haemorhous_mexicanus",
            "Loxia_leucoptera",
            "Nycticorax_nycticorax",
            "Regulus_calendula",
            "Sterna_forsteri",
        )
    ),
    f"{MIXED}/birds/Calidris_alpina_01.png",
    # No organism, plants (no plant model here) and insects the insects model does not have:
    # background and low_confidence answers.
    f"{MIXED}/other/Felis_catus_01.png",
    f"{MIXED}/other/astronaut_01.png",
    f"{MIXED}/other/brick_wall_01.png",
    f"{MIXED}/other/hubble_deep_field_01.jpg",
    f"{MIXED}/plants/Achillea_millefolium_01.jpg",
    f"{MIXED}/plants/Papaver_rhoeas_01.jpg",
    f"{MIXED}/insects/Agrilus_spinipennis_01.jpg",
    f"{MIXED}/insects/Agrotis_exclamationis_01.jpg",
    # The four samples.
    "samples/Poecile_atricapillus_01.bmp",
    "samples/Ara_macao_01.jpg",
    "samples/Micrathyria_hagenii_01.bmp",
    "samples/Helianthus_annuus_02.bmp",
)
# Each photo is sent to each of these (route, query parameters).
ROUTES: tuple[tuple[str, dict[str, Any]], ...] = (
    ("/bird_url", {}),
    ("/insect_url", {}),
    ("/v1/classify/aiy_insects_v1", {}),
    ("/v1/classify/aiy_insects_v1", {"top_k": 10}),
)


@dataclass(frozen=True)
class Case:
    """One request: a photo (relative to the shared folder) uploaded in ``image`` to a route."""

    route: str
    photo: str
    params: dict[str, Any] = field(default_factory=dict)
    name: str = ""  # for a steered request: what it steers

    @property
    def id(self) -> str:
        query = f"?{urlencode(self.params)}" if self.params else ""
        return f"{self.name or Path(self.photo).stem} {self.route}{query}"


STEERED = (
    # The server links no taxonomy: today a taxon filter is refused (409 taxonomy_missing).
    Case("/insect_url", f"{LEEDS}/001_0001.jpg", {"taxon": "Lepidoptera"}, "monarch taxon"),
    # Heliconius erato, 0.645 today: under min_score=0.9 it is low_confidence.
    Case("/insect_url", f"{LEEDS}/003_0001.jpg", {"min_score": 0.9}, "erato min_score"),
    Case("/insect_url", f"{LEEDS}/003_0001.jpg", {"rollup_threshold": 0.3}, "erato rollup_threshold"),
)


def classic_cases() -> list[Case]:
    return [Case(route, photo, params) for photo in PHOTOS for route, params in ROUTES] + list(STEERED)


def classic_manifest(folder: Path) -> Path:
    """The real birds and insects models as volumes/models/models.toml declares them (scope tensors
    and shipped calibrations), without a taxonomy: neither link-gbif's nor the shipped offline
    one, as at d040904, when no answer carried one. With the shipped manifest the same answers
    also carry each result's `taxonomy` (`source: ncbi`) and, where no species reaches the
    threshold, a `rollup`: values where these have null, nothing else changed
    (tests/enrich/test_offline_identify.py)."""
    entries = [with_scope(aiy_entry(*BIRDS)), with_scope(aiy_entry(*INSECTS))]
    return write_manifest(folder / "models.toml", entries)


def classic_server(folder: Path, log: Path) -> ServiceProcess:
    """Not started: ``.start()`` it (and ``.stop()`` it)."""
    return ServiceProcess(service_env(classic_manifest(folder)), log)


def ask(client: httpx.Client, case: Case, shared: Path) -> tuple[int, dict[str, Any]]:
    """The status and the JSON answer, less its timings."""
    path = shared / case.photo
    files = {"image": (path.name, path.read_bytes(), "application/octet-stream")}
    response = client.post(case.route, params=case.params, files=files)
    body = response.json()
    body.pop("timings_ms", None)
    return response.status_code, body


def record(base_url: str, shared: Path) -> dict[str, Any]:
    cases = []
    with httpx.Client(base_url=base_url, timeout=60) as client:
        for case in classic_cases():
            status, body = ask(client, case, shared)
            cases.append(
                {
                    "id": case.id,
                    "route": case.route,
                    "photo": case.photo,
                    "params": case.params,
                    "status": status,
                    "body": body,
                }
            )
    return {
        "about": "answers of the classic endpoints (uploads) on real photos, timings left out; photo "
        "paths are relative to the shared folder (../shared); written by python -m tests.contract.refresh",
        "cases": cases,
    }


def write_json(path: Path, document: Any) -> None:
    path.write_text(json.dumps(document, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
