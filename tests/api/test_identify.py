"""POST /v1/identify over real HTTP, on the real birds and insects models with their shipped
calibrations and real photos: one fetch and one decode per photo for every model (/metrics),
the answers and the honest "no match", the refusals (never a 500), the geo prior against the
fake GBIF's occurrence search (re-ranking, its cache, GBIF down or stalling), and the OpenAPI
contract."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.fakes.gbif import FakeGbif
from tests.fakes.image_host import ImageHost
from tests.support.env import MAX_UPLOAD, gbif_env, service_env
from tests.support.figures import figure
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, with_scope, write_manifest
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

SAMPLES = SHARED / "samples"
CHICKADEE = SAMPLES / "Poecile_atricapillus_01.bmp"
DRAGONFLY = SAMPLES / "Micrathyria_hagenii_01.bmp"
SUNFLOWER = SAMPLES / "Helianthus_annuus_02.bmp"
LEEDS = SHARED / "datasets" / "leedsbutterfly" / "images"
NO_ORGANISM = sorted((SHARED / "datasets" / "mixed" / "images" / "other").glob("*.*"))
MONARCHS = [LEEDS / f"001_000{i}.jpg" for i in (1, 2, 3)]  # Danaus plexippus
# Two giant swallowtails (Leeds category 007) the insects model splits: the first photo reads as
# Heraclides rumiko, the second as H. cresphontes, so the pair's vision top 2 are near a tie.
SWALLOWTAIL_PAIR = [LEEDS / "007_0004.jpg", LEEDS / "007_0005.jpg"]
CALIBRATION = REPO / "volumes" / "models" / "calibration"
MODEL_NAMES = {"aiy_birds_v1", "aiy_insects_v1"}
# The geo prior's settings (app/settings.py GbifSettings defaults, which the servers keep).
FLOOR, HALF_SATURATION, PRIOR_TIMEOUT = 0.1, 5.0, 2.0
# /v1/identify lists no species under this share of the best one, nor any the model gave no
# probability (app/identification/decide.py NOISE_RATIO, listed).
NOISE_RATIO = 1e-3


def identify_entry(model: tuple[str, str, int, str], **extra: Any) -> dict[str, Any]:
    """A real AIY classifier with what /v1/identify needs, as volumes/models/models.toml has."""
    return with_scope(aiy_entry(*model)) | extra


def identify_manifest(folder: Path) -> Path:
    return write_manifest(folder / "models.toml", [identify_entry(BIRDS), identify_entry(INSECTS)])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[ServiceProcess]:
    """Both classifiers, private networks allowed (the image host is on loopback)."""
    manifest = identify_manifest(tmp_path_factory.mktemp("identify"))
    proc = ServiceProcess(service_env(manifest), artifacts / "identify-service.log").start()
    yield proc
    proc.stop()


def identify(
    base_url: str,
    uploads: Sequence[Path | tuple[str, bytes]] = (),
    urls: Sequence[str] = (),
    timeout: float = 60,
    **params: Any,
) -> httpx.Response:
    files = [
        ("image", (u.name, u.read_bytes(), "application/octet-stream"))
        if isinstance(u, Path)
        else ("image", (u[0], u[1], "application/octet-stream"))
        for u in uploads
    ]
    query = {**params, **({"img_url": list(urls)} if urls else {})}
    return httpx.post(f"{base_url}/v1/identify", params=query, files=files or None, timeout=timeout)


def ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    return response.json()


def error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code} (wanted {status}): {response.text}"
    body = response.json()["error"]
    assert body["code"] and body["message"], body
    return body


def top(body: dict[str, Any]) -> tuple[str, str]:
    return body["results"][0]["model"], body["results"][0]["scientific_name"]


def classify(base_url: str, photo: Path, **params: Any) -> httpx.Response:
    """The insects model's own output on one photo (/v1/classify: its probabilities, zeros too)."""
    files = {"image": (photo.name, photo.read_bytes())}
    return httpx.post(f"{base_url}/v1/classify/aiy_insects_v1", params=params, files=files, timeout=60)


def given_probability(*outputs: dict[str, Any]) -> set[str]:
    """The species the model gave any probability in some photo, from the classifier endpoint's
    answers on each photo (no filter: the model's own output, listed down to its zeros, so that
    none it gave probability is missed)."""
    given: set[str] = set()
    for output in outputs:
        assert output["filters"] is None and output["results"][-1]["score"] == 0.0, output["results"][-1]
        given |= {r["scientific_name"] for r in output["results"] if r["score"] > 0}
    return given


# --- one fetch and one decode per photo ------------------------------------------------------


def counters(base_url: str) -> dict[str, float]:
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200, response.text
    samples = [s for family in text_string_to_metric_families(response.text) for s in family.samples]

    def total(name: str, **labels: str) -> float:
        return sum(
            s.value
            for s in samples
            if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    found = {
        "decodes": total("photo_decodes_total"),
        "fetches": total("image_fetch_seconds_count"),
    }
    for model in sorted(MODEL_NAMES):
        found[model] = total("model_inference_seconds_count", model=model)
    return found


def grown(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {key: after[key] - before[key] for key in before}


def test_each_photo_is_fetched_and_decoded_once_for_every_model(server, image_host: ImageHost):
    paths = ["/files/leeds/001_0001.jpg", "/files/leeds/001_0002.jpg"]
    urls = [image_host.url(path) for path in paths]
    upload = MONARCHS[2]
    hits = {path: image_host.hits[path] for path in paths}

    before = counters(server.base_url)
    body = ok(identify(server.base_url, [upload], urls))
    together = grown(before, counters(server.base_url))
    assert together == {"decodes": 3, "fetches": 2, "aiy_birds_v1": 3, "aiy_insects_v1": 3}, together
    assert {path: image_host.hits[path] - hits[path] for path in paths} == dict.fromkeys(paths, 1)
    assert top(body) == ("aiy_insects_v1", "Danaus plexippus")
    assert [p["source"] for p in body["photos"]] == ["upload", "url", "url"]  # uploads first

    # The same three photos through the one-model routes: every route fetches and decodes again.
    before = counters(server.base_url)
    for route in ("/bird_url", "/insect_url"):
        for url in urls:
            ok(httpx.post(f"{server.base_url}{route}", params={"img_url": url}, timeout=60))
        ok(
            httpx.post(
                f"{server.base_url}{route}", files={"image": (upload.name, upload.read_bytes())}, timeout=60
            )
        )
    apart = grown(before, counters(server.base_url))
    assert apart == {"decodes": 6, "fetches": 4, "aiy_birds_v1": 3, "aiy_insects_v1": 3}, apart
    figure(
        f"/v1/identify, 3 photos x 2 models: {together['decodes']:.0f} decodes, "
        f"{together['fetches']:.0f} fetches; /bird_url + /insect_url: {apart['decodes']:.0f} decodes, "
        f"{apart['fetches']:.0f} fetches"
    )


# --- the answers -----------------------------------------------------------------------------


def thresholds() -> dict[str, float]:
    return {
        name: json.loads((CALIBRATION / f"{name}.json").read_text())["scope_threshold"]
        for name in MODEL_NAMES
    }


def check_assessments(body: dict[str, Any], models: set[str] = MODEL_NAMES) -> dict[str, dict[str, Any]]:
    """`models` lists every model asked with its scope, its calibration's threshold and whether it
    accepted; `why` names the model that fits best (the chosen one when one accepted)."""
    assessed = {m["model"]: m for m in body["models"]}
    assert set(assessed) == models and len(body["models"]) == len(models)
    expected = thresholds()
    for name, m in assessed.items():
        assert m["signal"] == "class_cosine"
        assert m["threshold"] == pytest.approx(expected[name], abs=1e-6)
        assert math.isfinite(m["scope"]) and m["accepted"] == (m["scope"] >= m["threshold"])
        assert m["best"] and 0.0 <= m["best_score"] <= 1.0
    best = max(assessed.values(), key=lambda m: m["scope"])
    assert body["why"].startswith(f"{best['model']} fits best"), body["why"]
    # The highest signal chooses (one signal for both); the answer is its model when it accepts.
    assert body["model"] == (best["model"] if best["accepted"] else None)
    return assessed


@pytest.mark.parametrize(
    ("photo", "model", "group", "species"),
    [
        (CHICKADEE, "aiy_birds_v1", "bird", "Poecile atricapillus"),
        (DRAGONFLY, "aiy_insects_v1", "insect", "Micrathyria hagenii"),
    ],
    ids=["chickadee", "dragonfly"],
)
def test_a_photo_is_named_by_the_model_whose_scope_fits(server, photo, model, group, species):
    body = ok(identify(server.base_url, [photo]))
    assert (body["model"], body["group"]) == (model, group)
    assert body["no_match"] is False and body["no_match_reason"] is None
    assert top(body) == (model, species) and body["results"][0]["score"] >= 0.5
    assert all(r["model"] == model and r["group"] == group for r in body["results"])
    # At most top_k (5), and no noise: nothing under 1/1000 of the best (the quantized models'
    # zeros, equal tiny values after the calibration, are not listed).
    ranks = [r["rank"] for r in body["results"]]
    assert 1 <= len(ranks) <= 5 and ranks == list(range(1, len(ranks) + 1))
    scores = [r["score"] for r in body["results"]]
    assert scores == sorted(scores, reverse=True) and sum(scores) <= 1.0 + 1e-6
    assert min(scores) >= scores[0] / 1000
    assert all(r["per_photo"] and len(r["per_photo"]) == 1 for r in body["results"])
    assessed = check_assessments(body)
    assert [name for name, m in assessed.items() if m["accepted"]] == [model]
    assert body["geo"]["status"] == "not_requested" and body["photos"][0]["source"] == "upload"


@pytest.mark.parametrize("photo", [SUNFLOWER, *NO_ORGANISM], ids=lambda p: p.stem)
def test_what_no_model_covers_is_no_match_without_species(server, photo):
    body = ok(identify(server.base_url, [photo]))
    assert body["no_match"] is True, [(r["scientific_name"], r["score"]) for r in body["results"]]
    assert body["no_match_reason"] in ("out_of_scope", "not_an_organism"), body["no_match_reason"]
    assert body["results"] == [] and body["model"] is None and body["group"] is None
    assert body["rollup"] is None
    check_assessments(body)


def test_an_observation_of_three_photos_is_named_with_each_photos_score(server):
    body = ok(identify(server.base_url, MONARCHS, top_k=3))
    assert top(body) == ("aiy_insects_v1", "Danaus plexippus") and not body["no_match"]
    # Three photos that agree leave no other species with 1/1000 of the monarch's probability.
    assert 1 <= len(body["results"]) <= 3 and len(body["photos"]) == 3
    assert all(r["score"] >= body["results"][0]["score"] / 1000 for r in body["results"])
    assert all(len(r["per_photo"]) == 3 for r in body["results"])
    first = body["results"][0]
    assert min(first["per_photo"]) >= 0.5 and first["score"] >= 0.9  # every photo agrees
    check_assessments(body)


def test_groups_restricts_the_models_asked(server):
    body = ok(identify(server.base_url, [DRAGONFLY], groups="bird"))
    assert [m["model"] for m in body["models"]] == ["aiy_birds_v1"]
    assert body["no_match"] is True and body["no_match_reason"] == "out_of_scope"
    assert body["results"] == [] and body["model"] is None
    check_assessments(body, {"aiy_birds_v1"})

    refused = error(identify(server.base_url, [DRAGONFLY], groups=["insect", "fish"]), 400)
    assert "fish" in refused["message"] and "bird" in refused["message"] and "insect" in refused["message"]
    assert refused["detail"]["unknown"] == ["fish"] and refused["detail"]["groups"] == ["bird", "insect"]


# --- bad input -------------------------------------------------------------------------------


def test_bad_input_is_refused_with_a_reason_and_never_a_500(server, image_host: ImageHost):
    good = (CHICKADEE.name, CHICKADEE.read_bytes())
    jpeg = (LEEDS / "001_0001.jpg").read_bytes()
    truncated = ("cut.jpg", jpeg[: len(jpeg) // 3])
    huge = ("huge.jpg", b"\xff\xd8\xff" + b"\0" * (MAX_UPLOAD + 10))
    url = image_host.url("/files/samples/Poecile_atricapillus_01.bmp")
    # (what, request, status, code, words the message holds, the photo the detail names)
    cases: list[tuple[str, dict[str, Any], int, str, tuple[str, ...], int | None]] = [
        ("no photo", {}, 400, "bad_request", ("1 to 5", "got 0"), None),
        ("six uploads", {"uploads": [good] * 6}, 400, "bad_request", ("1 to 5", "got 6"), None),
        ("three uploads and three urls", {"uploads": [good] * 3, "urls": [url] * 3}, 400, "bad_request",
         ("got 6",), None),
        ("six urls", {"urls": [url] * 6}, 400, "invalid_parameters", ("img_url",), None),
        ("lat without lon", {"uploads": [good], "lat": 51.5}, 400, "bad_request", ("lat", "lon"), None),
        ("lon without lat", {"uploads": [good], "lon": -0.1}, 400, "bad_request", ("lat", "lon"), None),
        ("lat 91", {"uploads": [good], "lat": 91, "lon": 0}, 400, "invalid_parameters", ("lat",), None),
        ("lon -181", {"uploads": [good], "lat": 0, "lon": -181}, 400, "invalid_parameters", ("lon",), None),
        ("lat not a number", {"uploads": [good], "lat": "north", "lon": 0}, 400, "invalid_parameters",
         ("lat",), None),
        ("date 2026-13-40", {"uploads": [good], "date": "2026-13-40"}, 400, "invalid_parameters", ("date",),
         None),
        ("date yesterday", {"uploads": [good], "date": "yesterday"}, 400, "invalid_parameters", ("date",),
         None),
        ("top_k 0", {"uploads": [good], "top_k": 0}, 400, "invalid_parameters", ("top_k",), None),
        ("2nd upload truncated", {"uploads": [good, truncated, good]}, 422, "undecodable_image",
         ("photo 2", "cut.jpg"), 2),
        ("2nd upload over the cap", {"uploads": [good, huge]}, 413, "too_large", ("huge.jpg",), None),
        ("2nd upload empty", {"uploads": [good, ("empty.jpg", b"")]}, 400, "bad_request", ("empty.jpg",),
         None),
        ("3rd photo a malformed url", {"uploads": [good], "urls": [url, "ftp://example.org/x.jpg"]}, 400,
         "invalid_url", ("photo 3",), 3),
        ("2nd photo not an image", {"uploads": [good], "urls": [image_host.url("/as/text%2Fhtml/page.html")]},
         415, "not_an_image", ("photo 2",), 2),
        ("2nd photo's host answers 404", {"uploads": [good], "urls": [image_host.url("/files/none.jpg")]},
         502, "upstream_error", ("photo 2",), 2),
    ]  # fmt: skip
    report = []
    for what, request, status, code, words, photo in cases:
        uploads, urls = request.pop("uploads", []), request.pop("urls", [])
        response = identify(server.base_url, uploads, urls, **request)
        report.append(f"{what}: {response.status_code} {response.text[:300]}")
        assert response.status_code != 500, report[-1]
        body = error(response, status)
        assert body["code"] == code, report[-1]
        assert all(word in body["message"] for word in words), report[-1]
        if photo is not None:
            assert body["detail"].get("photo") == photo, report[-1]
    # The server still serves, and it logged no unhandled error.
    assert top(ok(identify(server.base_url, [CHICKADEE]))) == ("aiy_birds_v1", "Poecile atricapillus")
    log = server.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]


# --- the geo prior against the fake GBIF -----------------------------------------------------


@dataclass
class GeoServer:
    proc: ServiceProcess
    gbif: FakeGbif
    taxa: Path  # what link-gbif wrote for the insects model

    @property
    def base_url(self) -> str:
        return self.proc.base_url


def link_insects(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app", "link-gbif", "--model", "aiy_insects_v1",
         "--rate", "1000", "--no-progress"],
        cwd=REPO, env={**os.environ, **env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def geo(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[GeoServer]:
    """The insects labels linked to the fake GBIF (link-gbif), then a server asking it for
    occurrence counts; private networks refused here, as in production."""
    root = tmp_path_factory.mktemp("identify-geo")
    taxa = root / "insects-taxa.jsonl"
    manifest = write_manifest(
        root / "models.toml", [identify_entry(BIRDS), identify_entry(INSECTS, taxonomy=str(taxa))]
    )
    with FakeGbif() as fake:
        env = gbif_env(manifest, fake, root / "gbif.sqlite", ALLOW_PRIVATE_NETWORKS="false")
        linked = link_insects(env)
        assert linked.returncode == 0, linked.stdout + linked.stderr
        assert len(taxa.read_text().splitlines()) == 1021  # every species label (not the background)
        proc = ServiceProcess(env, artifacts / "identify-geo-service.log").start()
        try:
            yield GeoServer(proc, fake, taxa)
        finally:
            proc.stop()


def by_name(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["scientific_name"]: r for r in body["results"]}


def weight(records: int) -> float:
    """The documented rule (app/enrich/geo.py): floor + (1 - floor) * n / (n + half_saturation)."""
    return FLOOR + (1 - FLOOR) * records / (records + HALF_SATURATION)


def linked_names(taxa: Path) -> set[str]:
    """The labels link-gbif gave a species key (the rest, subspecies, are unlinked)."""
    rows = [json.loads(line) for line in taxa.read_text().splitlines()]
    return {row["name"] for row in rows if (row.get("taxon") or {}).get("speciesKey")}


def unlinked_weight(taxa: Path, records: dict[str, int]) -> float:
    """What an unlinked label weighs (app/services/geo.py): the mean weight of the linked ones."""
    return float(np.mean([weight(records.get(name, 0)) for name in linked_names(taxa)]))


@dataclass
class Reranked:
    vision: dict[str, Any]  # the pair without a place, top 100
    body: dict[str, Any]  # the pair in the cell, top 100
    elapsed: float
    first: str  # the vision's best species (never recorded in the cell)
    second: str  # the vision's second (recorded a lot)
    records: dict[str, int]  # what the fake has for the cell
    cell: tuple[str, str, str | None]  # the fake's key for the cell's query
    classified: list[dict[str, Any]]  # /v1/classify on each photo of the pair, top 100


@pytest.fixture(scope="module")
def reranked(geo: GeoServer) -> Reranked:
    fake = geo.gbif
    fake.reset_occurrences()
    vision = ok(identify(geo.base_url, SWALLOWTAIL_PAIR, top_k=100))
    assert vision["geo"] == {"status": "not_requested", "reason": "no lat/lon given", "cell": None,
                             "cell_records": None, "cache": None, "mode": "prior",
                             "recorded_species": None, "source": None, "months": None}  # fmt: skip
    assert sum(fake.occurrence_hits.values()) == 0  # no place, no upstream call
    first, second = (r["scientific_name"] for r in vision["results"][:2])
    assert {first, second} == {"Heraclides rumiko", "Heraclides cresphontes"}, (first, second)
    seen = by_name(vision)
    assert seen[first]["score"] < 1.2 * seen[second]["score"]  # the vision top 2 are close
    keys = {name: r["taxonomy"]["speciesKey"] for name, r in seen.items() if r["taxonomy"]}
    assert first in keys and second in keys  # linked: the taxonomy carries GBIF's species keys
    # The vision lists exactly the species the model gave any probability (none of them under
    # 1/1000 of the best): the rest it gave 0 in both photos.
    classified = [ok(classify(geo.base_url, photo, top_k=100)) for photo in SWALLOWTAIL_PAIR]
    given = given_probability(*classified)
    assert set(seen) == given, (set(seen), given)
    # The third: the first linked species the model gave 0 in both photos (the classifier lists
    # its zeros in label order), so never listed: it holds the photos' floor.
    third, keys[third] = next(
        (r["scientific_name"], r["taxonomy"]["speciesKey"])
        for r in classified[0]["results"]
        if r["scientific_name"] not in given and (r["taxonomy"] or {}).get("speciesKey")
    )

    # Around Philadelphia (the 1-degree cell 40..41 N, 76..75 W): the second species recorded a
    # lot, the first never, a third one a little.
    records = {second: 400, third: 3}
    fake.occurrences = [(40.0, 41.0, -76.0, -75.0, None, {keys[n]: c for n, c in records.items()})]
    started = time.perf_counter()
    body = ok(identify(geo.base_url, SWALLOWTAIL_PAIR, top_k=100, lat=40.2, lon=-75.3, date="2026-06-21"))
    elapsed = time.perf_counter() - started
    return Reranked(vision, body, elapsed, first, second, records, ("40,41", "-76,-75", "6"), classified)


def test_the_geo_prior_reranks_close_species_by_what_gbif_recorded_there(geo, reranked):
    fake, vision, body = geo.gbif, reranked.vision, reranked.body
    first, second, records = reranked.first, reranked.second, reranked.records
    assert all(r["geo_weight"] is None and r["geo_records"] is None for r in vision["results"])
    assert all(r["vision_score"] == r["score"] for r in vision["results"])
    assert body["geo"] == {
        "status": "applied", "reason": None,
        "cell": {"south": 40.0, "north": 41.0, "west": -76.0, "east": -75.0, "month": 6},
        "cell_records": sum(records.values()), "cache": "miss", "mode": "prior", "recorded_species": None,
        "source": "gbif", "months": [6],
    }  # fmt: skip
    assert fake.occurrence_hits == {reranked.cell: 1}
    query = fake.occurrence_queries[0]
    assert query["facet"] == "speciesKey" and query["limit"] == "0" and query["month"] == "6"
    assert query["occurrenceStatus"] == "PRESENT" and query["hasGeospatialIssue"] == "false"

    # The order changes: the recorded species first, the unrecorded one demoted, not removed.
    assert [r["scientific_name"] for r in body["results"][:2]] == [second, first]
    assert [r["rank"] for r in body["results"]] == list(range(1, len(body["results"]) + 1))
    assert body["model"] == "aiy_insects_v1" and not body["no_match"]
    seen, results = by_name(vision), by_name(body)
    for name, r in results.items():
        assert {"vision_score", "geo_weight", "geo_records", "score"} <= set(r)
        if name in seen:
            assert r["vision_score"] == pytest.approx(seen[name]["score"], rel=1e-6, abs=1e-12)
        # A label GBIF could not link (a subspecies: no species key) weighs what the linked
        # species weigh on average: nothing is known of it.
        neutral = unlinked_weight(geo.taxa, records)
        expected = neutral if r["taxonomy"] is None else weight(records.get(name, 0))
        assert r["geo_weight"] == pytest.approx(expected, rel=1e-9), (name, r)
        assert r["geo_records"] == records.get(name, 0), (name, r)
    # score = vision_score * weight * one factor (the renormalisation), the same for every species.
    factors = [r["score"] / (r["vision_score"] * r["geo_weight"]) for r in body["results"]]
    assert max(factors) == pytest.approx(min(factors), rel=1e-4), factors
    assert results[second]["score"] > 0.8 > 0.1 > results[first]["score"]
    assert results[second]["score"] / results[first]["score"] == pytest.approx(
        seen[second]["score"] * weight(400) / (seen[first]["score"] * FLOOR), rel=1e-4
    )
    assert sum(r["score"] for r in body["results"]) <= 1.0 + 1e-6
    figure(
        f"/v1/identify geo prior: {second} {seen[second]['score']:.3f} -> {results[second]['score']:.3f}, "
        f"{first} {seen[first]['score']:.3f} -> {results[first]['score']:.3f} "
        f"({reranked.elapsed * 1000:.0f} ms, GBIF miss)"
    )

    # Elsewhere in the same cell and month: GBIF is not asked again.
    started = time.perf_counter()
    again = ok(identify(geo.base_url, SWALLOWTAIL_PAIR, top_k=100, lat=40.9, lon=-75.9, date="2026-06-02"))
    hit_ms = (time.perf_counter() - started) * 1000
    figure(f"/v1/identify geo prior, cache hit: {hit_ms:.0f} ms")
    assert hit_ms < 2000 and reranked.elapsed < 5.0  # measured 146 ms; the GBIF miss before it 279 ms
    assert again["geo"]["status"] == "applied" and again["geo"]["cache"] == "hit"
    assert fake.occurrence_hits == {reranked.cell: 1}
    assert [(r["scientific_name"], r["score"]) for r in again["results"]] == [
        (r["scientific_name"], r["score"]) for r in body["results"]
    ]

    # A bird: its labels are not linked, so there is no prior, and it says why.
    bird = ok(identify(geo.base_url, [CHICKADEE], lat=40.2, lon=-75.3))
    assert bird["geo"]["status"] == "not_linked" and "link-gbif" in bird["geo"]["reason"]
    assert top(bird) == ("aiy_birds_v1", "Poecile atricapillus")
    assert all(r["geo_weight"] is None for r in bird["results"])


def test_the_geo_prior_renormalises_over_the_species_alone(geo, reranked):
    """The rule (app/enrich/geo.py blend, app/services/geo.py): the species' vision scores times
    their weights, renormalised among the species to the probability they held; the background
    class (no species) keeps its own, neither favoured nor demoted. Every class of the pair
    outside its top 2 was given 0 by the model in both photos, so it holds the same vision
    probability (both photos' floor), unlisted; the sum over all 1021 species is known exactly
    from the listed ones and the taxonomy file."""
    vision, body = reranked.vision, reranked.body
    listed = vision["results"]
    # The listed are all the model gave probability; the rest, the background too, it gave 0.
    assert set(by_name(vision)) == given_probability(*reranked.classified)
    assert all(output["background_score"] == 0.0 for output in reranked.classified)
    # The vision sums to 1 over the 1022 classes: the unlisted ones (the background too) hold
    # the floor each.
    tail = (1.0 - sum(r["score"] for r in listed)) / (1022 - len(listed))
    assert tail > 0.0
    background = tail

    rows = [json.loads(line) for line in geo.taxa.read_text().splitlines()]
    linked = linked_names(geo.taxa)
    unlisted = [row["name"] for row in rows if row["name"] not in by_name(vision)]
    assert len(unlisted) == 1021 - len(listed)
    neutral = unlinked_weight(geo.taxa, reranked.records)

    def w(name: str, taxonomy: object) -> float:
        return weight(reranked.records.get(name, 0)) if taxonomy is not None else neutral

    weighted_sum = sum(r["score"] * w(r["scientific_name"], r["taxonomy"]) for r in listed)
    # The unlisted weigh as the listed do (the third, recorded a little, is among them).
    weighted_sum += tail * sum(
        weight(reranked.records.get(name, 0)) if name in linked else neutral for name in unlisted
    )
    for r in body["results"]:
        expected = r["vision_score"] * r["geo_weight"] * (1.0 - background) / weighted_sum
        background_weighed = r["vision_score"] * r["geo_weight"] / (weighted_sum + background)
        assert r["score"] == pytest.approx(expected, rel=1e-5), (
            f"{r['scientific_name']}: score {r['score']!r}, the rule {expected!r}, with the "
            f"background class weighed 1.0 among the species: {background_weighed!r}"
        )


@pytest.mark.parametrize("failure", ["500", "stall"])
def test_gbif_down_or_stalling_gives_the_answer_without_the_prior_in_seconds(geo, failure):
    fake = geo.gbif
    fake.reset_occurrences()
    vision = ok(identify(geo.base_url, SWALLOWTAIL_PAIR))
    lat, lon = (10.5, 10.5) if failure == "500" else (-30.5, 20.5)  # cells never asked before
    fake.occurrences = [
        (math.floor(lat), math.floor(lat) + 1, math.floor(lon), math.floor(lon) + 1, None, {1: 5})
    ]
    if failure == "500":
        fake.occurrence_status = 500
    else:
        fake.occurrence_stall = 10.0
    try:
        started = time.perf_counter()
        body = ok(identify(geo.base_url, SWALLOWTAIL_PAIR, lat=lat, lon=lon, timeout=30))
        elapsed = time.perf_counter() - started
    finally:
        fake.occurrence_status, fake.occurrence_stall = None, 0.0
    assert sum(fake.occurrence_hits.values()) >= 1  # GBIF was asked
    assert body["geo"]["status"] == "unavailable" and body["geo"]["reason"], body["geo"]
    assert "GBIF" in body["geo"]["reason"]
    assert body["no_match"] is False and body["model"] == "aiy_insects_v1"
    assert [(r["scientific_name"], r["score"]) for r in body["results"]] == [
        (r["scientific_name"], r["score"]) for r in vision["results"]
    ]
    assert all(r["geo_weight"] is None and r["geo_records"] is None for r in body["results"])
    assert elapsed < PRIOR_TIMEOUT + 2.0, elapsed
    figure(f"/v1/identify with GBIF {failure}: answered without the prior in {elapsed * 1000:.0f} ms")


def test_a_private_address_is_refused_naming_the_photo(geo, image_host: ImageHost):
    """This server runs without ALLOW_PRIVATE_NETWORKS: nothing on loopback or a private network
    is fetched."""
    path = "/files/samples/Poecile_atricapillus_01.bmp"
    hits = image_host.hits[path]
    for url in (image_host.url(path), "http://10.1.2.3/bird.jpg", "http://169.254.169.254/latest/meta-data"):
        started = time.perf_counter()
        body = error(identify(geo.base_url, [CHICKADEE], [url], timeout=30), 400)
        assert time.perf_counter() - started < 2.0  # refused, not tried
        assert body["code"] == "url_not_allowed", body
        assert body["message"].startswith(f"photo 2 ({url}"), body["message"]
        assert body["detail"]["photo"] == 2
    assert image_host.hits[path] == hits
    log = geo.proc.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "unhandled error" not in log, log[-3000:]


# --- the contract ----------------------------------------------------------------------------


def test_openapi_documents_identify_with_its_schema_and_an_example(server):
    spec = httpx.get(f"{server.base_url}/openapi.json", timeout=10).json()
    operation = spec["paths"]["/v1/identify"]["post"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]
    assert answer == {"$ref": "#/components/schemas/IdentifyResponse"}
    assert {p["name"] for p in operation["parameters"]} >= {
        "img_url",
        "lat",
        "lon",
        "date",
        "groups",
        "top_k",
    }
    assert {"400", "413", "422"} <= set(operation["responses"])
    schema = spec["components"]["schemas"]["IdentifyResponse"]
    assert {"results", "no_match", "no_match_reason", "model", "group", "why", "models", "geo"} <= set(
        schema["properties"]
    )
    examples = schema.get("examples")
    assert examples, "IdentifyResponse has no example (app/api/examples.py IDENTIFY is empty)"
    for example in examples:
        assert set(schema["required"]) <= set(example), example
        assert example["results"] or example["no_match"]
    assert httpx.get(f"{server.base_url}/docs", timeout=10).status_code == 200
