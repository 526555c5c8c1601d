"""The classic endpoints answer today's answers: tests/contract/classic_baseline.json holds what
POST /bird_url, /insect_url and /v1/classify/aiy_insects_v1 (top_k 5 and 10) answered at commit
d040904 for real photos of ../shared uploaded to them (Leeds butterflies, mixed birds, photos
of no organism, plants and insects no model here has, the four samples), and three steered
requests (a taxon filter with no taxonomy linked, min_score, rollup_threshold); timings left out.

Each request is sent again to the CURRENT server (uvicorn on loopback, the real models as
volumes/models/models.toml declares them, no taxonomy linked: ``baselines.classic_server``) and
must get the same status (and error code), the same species in the same order with the same
indices, every score (score, vision_score, geo_score, combined_score) and background_score within
1e-6, the same no_match and no_match_reason; and everything else recorded (model, rollup, filters,
geo, thresholds, image, common names...) as recorded. New fields are fine.

Regenerate deliberately: ``.venv/bin/python -m tests.contract.refresh classic``.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.contract.baselines import CLASSIC_BASELINE, Case, ask, classic_server
from tests.support.server import ServiceProcess
from tests.support.shared import SHARED

RECORDED = json.loads(CLASSIC_BASELINE.read_text(encoding="utf-8"))["cases"]
TOLERANCE = 1e-6


def contained(old: Any, new: Any, path: str) -> list[str]:
    """Where ``new`` does not hold what ``old`` holds: every key of a dict (more keys are fine),
    lists element by element, numbers within TOLERANCE, the rest equal."""
    if isinstance(old, dict) and isinstance(new, dict):
        gone = [f"{path}.{key}: gone" for key in old if key not in new]
        return gone + [d for key in old if key in new for d in contained(old[key], new[key], f"{path}.{key}")]
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{path}: {len(old)} items -> {len(new)}"]
        return [
            d for i, (a, b) in enumerate(zip(old, new, strict=True)) for d in contained(a, b, f"{path}[{i}]")
        ]
    if _number(old) and _number(new):
        return [] if abs(old - new) <= TOLERANCE else [f"{path}: {old} -> {new}"]
    return [] if old == new and type(old) is type(new) else [f"{path}: {old!r} -> {new!r}"]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def differences(recorded: dict[str, Any], status: int, body: dict[str, Any]) -> list[str]:
    """What the current answer changes of the recorded one, each as one line."""
    old = recorded["body"]
    if status != recorded["status"]:
        return [f"status {recorded['status']} -> {status}: {json.dumps(body)[:500]}"]
    if status != 200:
        before, after = old["error"]["code"], body.get("error", {}).get("code")
        return [] if before == after else [f"error code {before!r} -> {after!r}"]
    found = []
    species = [[(r["scientific_name"], r["index"]) for r in b["results"]] for b in (old, body)]
    if species[0] != species[1]:
        found.append(f"species (name, index) {species[0]} -> {species[1]}")
        old = {key: value for key, value in old.items() if key != "results"}  # said once, above
    return found + contained(old, body, "body")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[httpx.Client]:
    server: ServiceProcess = classic_server(
        tmp_path_factory.mktemp("contract-classic"), artifacts / "contract-classic-service.log"
    ).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=60) as c:
            yield c
    finally:
        server.stop()


@pytest.mark.shared
@pytest.mark.parametrize("recorded", RECORDED, ids=[r["id"] for r in RECORDED])
def test_the_classic_endpoint_answers_as_recorded(client, recorded):
    case = Case(recorded["route"], recorded["photo"], recorded["params"])
    status, body = ask(client, case, SHARED)
    changes = differences(recorded, status, body)
    assert not changes, (
        f"{recorded['id']} ({recorded['photo']}) no longer answers as at d040904 "
        f"({CLASSIC_BASELINE.name}):\n  " + "\n  ".join(changes)
    )


def test_the_comparison_sees_a_change():
    """``differences`` is not vacuous: a reordering, a moved score, a new reason, a gone field and
    another status are each reported; an added field is not."""
    recorded = next(r for r in RECORDED if r["status"] == 200 and len(r["body"]["results"]) >= 2)
    body = json.loads(json.dumps(recorded["body"]))
    assert differences(recorded, 200, body) == []
    body["extra"] = 1
    body["results"][0]["new_field"] = "x"
    assert differences(recorded, 200, body) == []
    body["results"][0]["score"] += 2e-6
    body["no_match_reason"] = "something_else"
    del body["thresholds"]
    assert set(differences(recorded, 200, body)) == {
        "body.thresholds: gone",
        f"body.no_match_reason: {recorded['body']['no_match_reason']!r} -> 'something_else'",
        f"body.results[0].score: {recorded['body']['results'][0]['score']} -> {body['results'][0]['score']}",
    }
    body["results"].reverse()
    assert differences(recorded, 200, body)[0].startswith("species (name, index)")
    assert differences(recorded, 409, {"error": {"code": "taxonomy_missing"}})[0].startswith(
        "status 200 -> 409"
    )
