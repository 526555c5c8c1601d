"""Steering the answer over real HTTP (a real uvicorn on loopback, the real AIY birds and insects
models with their shipped calibrations, real photos), the insects labels linked by link-gbif
against the fake GBIF and the place's records served by its occurrence search: a taxon filter
that removes the top species and one that keeps it, species lists installed and uploaded with
their unmatched names, geo off/prior/filter giving three different, explained rankings for one
observation and place, per-request thresholds, and the refusals (never after a download)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from tests.api.test_identify import (
    CHICKADEE,
    DRAGONFLY,
    FLOOR,
    HALF_SATURATION,
    LEEDS,
    MONARCHS,
    NOISE_RATIO,
    SWALLOWTAIL_PAIR,
    error,
    given_probability,
    identify,
    identify_entry,
    link_insects,
    ok,
)
from tests.fakes.gbif import FakeGbif
from tests.fakes.image_host import ImageHost
from tests.support.env import gbif_env
from tests.support.figures import figure
from tests.support.manifests import BIRDS, INSECTS, write_manifest
from tests.support.server import REPO, ServiceProcess

pytestmark = pytest.mark.shared

RED_ADMIRAL = LEEDS / "009_0001.jpg"
GARDEN = "# a garden list\nVanessa atalanta\nVanessa cardui\nPieris rapae   # small white\nNotus inventus\n"
LIST_CAP = 4096  # LISTS_MAX_BYTES of this server: small enough to cross cheaply
# The place of the geo tests: the 1-degree cell 40..41 N, 76..75 W (around Philadelphia).
PLACE = {"lat": 40.2, "lon": -75.3}


@dataclass
class Steered:
    proc: ServiceProcess
    gbif: FakeGbif
    taxa: dict[str, dict[str, Any]]  # label -> what link-gbif wrote for it (None: unlinked)
    manifest: Path
    lists: Path
    env: dict[str, str]

    @property
    def base_url(self) -> str:
        return self.proc.base_url


@pytest.fixture(scope="module")
def steered(tmp_path_factory: pytest.TempPathFactory, artifacts: Path) -> Iterator[Steered]:
    """Birds (never linked) and insects (linked by link-gbif against the fake GBIF); an installed
    list 'garden' in the server's LISTS_DIR."""
    root = tmp_path_factory.mktemp("steering")
    taxa = root / "insects-taxa.jsonl"
    manifest = write_manifest(
        root / "models.toml", [identify_entry(BIRDS), identify_entry(INSECTS, taxonomy=str(taxa))]
    )
    lists = root / "lists"
    lists.mkdir()
    (lists / "garden.txt").write_text(GARDEN)
    (lists / "huge.txt").write_text("Vanessa atalanta\n" * (LIST_CAP // 10))
    with FakeGbif() as fake:
        env = gbif_env(
            manifest, fake, root / "gbif.sqlite", LISTS_DIR=str(lists), LISTS_MAX_BYTES=str(LIST_CAP)
        )
        linked = link_insects(env)
        assert linked.returncode == 0, linked.stdout + linked.stderr
        rows = [json.loads(line) for line in taxa.read_text().splitlines()]
        proc = ServiceProcess(env, artifacts / "steering-service.log").start()
        try:
            yield Steered(proc, fake, {r["name"]: r.get("taxon") for r in rows}, manifest, lists, env)
        finally:
            proc.stop()


def post(base_url: str, route: str, photo: Path | bytes, files: dict[str, Any] | None = None, **params: Any):
    data = photo.read_bytes() if isinstance(photo, Path) else photo
    parts: list[tuple[str, Any]] = [
        ("image", ("photo.png" if isinstance(photo, bytes) else photo.name, data))
    ]
    parts += list((files or {}).items())
    return httpx.post(f"{base_url}{route}", params=params, files=parts, timeout=60)


def names(body: dict[str, Any]) -> list[str]:
    return [r["scientific_name"] for r in body["results"]]


def labels_under(taxa: dict[str, dict[str, Any]], rank: str, name: str) -> set[str]:
    return {label for label, taxon in taxa.items() if taxon and taxon.get(rank) == name}


def listable(vision: dict[str, Any], given: set[str], kept: set[str]) -> set[str]:
    """What /v1/identify lists under a filter keeping ``kept`` (app/identification/decide.py
    ``listed``): the kept species the model gave any probability (``given``) holding at least
    NOISE_RATIO of the best of them. Their scores are the unsteered answer's (``vision``, top_k
    100: renormalising changes no ratio), which lists every one of ``given`` here."""
    scores = {r["scientific_name"]: r["score"] for r in vision["results"]}
    assert given <= set(scores), given - set(scores)
    held = {name: scores[name] for name in given & kept}
    best = max(held.values(), default=0.0)
    return {name for name, score in held.items() if score >= best * NOISE_RATIO}


def insects(base_url: str, photo: Path) -> dict[str, Any]:
    """The insects model's own output on one photo, top 100 (zeros too)."""
    return ok(post(base_url, "/v1/classify/aiy_insects_v1", photo, top_k=100))


def vanessa_overlay() -> bytes:
    """A red admiral and a painted lady overlaid (as tests/api/test_gbif_taxonomy.py): the insects
    model says V. cardui 0.758, V. virginiensis 0.125."""
    images = [
        Image.open(LEEDS / n).convert("RGB").resize((448, 448)) for n in ("009_0003.jpg", "010_0001.jpg")
    ]
    buffer = io.BytesIO()
    Image.blend(*images, 0.5).save(buffer, "PNG")
    return buffer.getvalue()


# --- taxon --------------------------------------------------------------------------------------


def test_a_taxon_filter_that_keeps_the_top_species_renormalises_over_the_kept(steered):
    lepidoptera = labels_under(steered.taxa, "order", "Lepidoptera")
    # The classifier endpoint: the model's own probabilities.
    plain = ok(post(steered.base_url, "/insect_url", MONARCHS[0]))
    body = ok(post(steered.base_url, "/insect_url", MONARCHS[0], taxon="lepidoptera"))
    assert names(plain)[0] == names(body)[0] == "Danaus plexippus"
    order_key = steered.taxa["Danaus plexippus"]["orderKey"]
    filters = body["filters"]
    assert filters["taxon"] == {"key": order_key, "name": "Lepidoptera", "rank": "order", "source": "gbif"}
    assert filters["kept_classes"] == len(lepidoptera) and filters["species_list"] is None
    assert filters["kept_mass"] == pytest.approx(plain["results"][0]["score"], abs=1e-6)  # the rest hold 0
    assert set(names(body)) <= lepidoptera and body["no_match"] is False
    top = body["results"][0]
    assert top["score"] == top["combined_score"] == top["vision_score"] == pytest.approx(1.0)
    assert top["geo_score"] is None and body["geo"]["status"] == "not_requested"
    assert body["thresholds"] == {"min_score": 0.1, "rollup_threshold": 0.8}
    assert plain["filters"] is None

    # /v1/identify: calibrated; the birds model (no taxonomy) is not asked, and says why.
    vision = ok(identify(steered.base_url, [MONARCHS[0]], top_k=100))
    found = ok(identify(steered.base_url, [MONARCHS[0]], top_k=100, taxon=str(order_key)))  # by its GBIF key
    assert found["filters"]["taxon"]["name"] == "Lepidoptera"
    assert [m["model"] for m in found["models"]] == ["aiy_insects_v1"]
    assert "link-gbif --model aiy_birds_v1" in found["filters"]["excluded_models"]["aiy_birds_v1"]
    assert names(found)[0] == "Danaus plexippus" and not found["no_match"]
    assert found["filters"]["kept_classes"] == len(lepidoptera)
    # Only kept classes, and of them every one the model gave probability (`plain` lists its
    # zeros) holding 1/1000 of the best: the kept classes it gave 0 are no guesses.
    given = given_probability(plain)
    assert set(names(found)) <= lepidoptera & given
    assert set(names(found)) == listable(vision, given, lepidoptera)
    mass = found["filters"]["kept_mass"]
    before = {r["scientific_name"]: r["score"] for r in vision["results"]}
    assert mass == pytest.approx(sum(before[n] for n in lepidoptera if n in before), rel=1e-3)
    for r in found["results"]:
        if r["scientific_name"] in before:
            assert r["vision_score"] == pytest.approx(before[r["scientific_name"]] / mass, rel=1e-3, abs=1e-7)
    # Renormalised over the kept: the listed hold their share of the kept mass, the unlisted kept
    # classes (given 0: the calibration's floor) the rest, each under 1/1000 of the best.
    total = sum(r["score"] for r in found["results"])
    assert total == pytest.approx(sum(before[n] for n in names(found)) / mass, rel=1e-4)
    unlisted = found["filters"]["kept_classes"] - len(found["results"])
    assert -1e-6 <= 1.0 - total <= unlisted * found["results"][0]["score"] * NOISE_RATIO


def test_a_taxon_filter_that_removes_the_top_species_says_how_little_it_kept(steered):
    vanessa = {n for n in steered.taxa if n.startswith("Vanessa ")}  # the unlinked subspecies too
    genus_key = steered.taxa["Vanessa cardui"]["genusKey"]
    # A monarch under taxon=Vanessa: the uint8 classifier gives the eight Vanessa exactly 0:
    # nothing to list.
    classified = ok(post(steered.base_url, "/insect_url", MONARCHS[0], taxon="Vanessa"))
    assert classified["results"] == [] and classified["no_match_reason"] == "filtered_out"
    assert classified["filters"]["kept_mass"] == 0.0
    # Calibrated, they held 0.0001 of the probability together (the photo's floor): filtered_out,
    # and no guesses, none of them given any probability.
    body = ok(identify(steered.base_url, [MONARCHS[0]], taxon="Vanessa", top_k=10))
    assert set(names(body)) <= vanessa & set(names(classified))  # kept, and given probability
    assert body["results"] == []
    assert body["filters"]["taxon"] == {
        "key": genus_key,
        "name": "Vanessa",
        "rank": "genus",
        "source": "gbif",
    }
    assert body["filters"]["kept_classes"] == len(vanessa) == 8
    assert 0.0 < body["filters"]["kept_mass"] < 0.001
    assert body["no_match"] is True and body["no_match_reason"] == "filtered_out"
    assert body["rollup"] is None  # "genus Vanessa" would say nothing: it holds all by construction

    # Two Vanessa overlaid: V. cardui first; under taxon=Vanessa virginiensis the second, which
    # held 0.125 (over MIN_SCORE), is the answer at 1.0.
    overlay = vanessa_overlay()
    plain = ok(post(steered.base_url, "/insect_url", overlay))
    assert names(plain)[:2] == ["Vanessa cardui", "Vanessa virginiensis"]
    narrowed = ok(post(steered.base_url, "/insect_url", overlay, taxon="Vanessa virginiensis"))
    assert names(narrowed) == ["Vanessa virginiensis"] and narrowed["no_match"] is False
    assert narrowed["filters"]["taxon"]["rank"] == "species"
    assert narrowed["filters"]["kept_mass"] == pytest.approx(plain["results"][1]["score"])
    assert narrowed["results"][0]["score"] == pytest.approx(1.0)
    assert narrowed["background_score"] == plain["background_score"]  # the model's, unchanged
    figure(
        f"taxon=Vanessa on a monarch (/v1/identify): kept mass {body['filters']['kept_mass']:.6f} -> "
        f"filtered_out; taxon=Vanessa virginiensis on the Vanessa overlay: kept mass "
        f"{narrowed['filters']['kept_mass']:.3f} -> V. virginiensis 1.0"
    )


def test_an_unknown_taxon_is_400_and_one_needing_a_missing_taxonomy_409_before_any_download(
    steered, image_host: ImageHost
):
    path = "/files/samples/Poecile_atricapillus_01.bmp"
    url = image_host.url(path)
    hits = image_host.hits[path]
    unknown = error(
        httpx.post(f"{steered.base_url}/insect_url", params={"img_url": url, "taxon": "Nonexistentia"}), 400
    )
    assert unknown["code"] == "unknown_taxon" and "Nonexistentia" in unknown["message"]
    assert unknown["detail"]["linked"] == ["aiy_insects_v1"]
    again = error(identify(steered.base_url, urls=[url], taxon="Nonexistentia", groups="insect"), 400)
    assert again["code"] == "unknown_taxon"
    # Aves is not in the insects' taxonomy, and the birds model has none to look in.
    missing = error(identify(steered.base_url, urls=[url], taxon="Aves"), 409)
    assert missing["code"] == "taxonomy_missing" and "link-gbif --model aiy_birds_v1" in missing["message"]
    bird = error(
        httpx.post(f"{steered.base_url}/bird_url", params={"img_url": url, "taxon": "Passeriformes"}), 409
    )
    assert bird["code"] == "taxonomy_missing" and "link-gbif" in bird["message"]
    assert image_host.hits[path] == hits  # refused before fetching the photo


# --- species lists ----------------------------------------------------------------------------


def test_an_installed_species_list_ranks_only_its_species_and_reports_unmatched_names(steered):
    listed = {"Vanessa atalanta", "Vanessa cardui", "Pieris rapae"}
    vision = ok(identify(steered.base_url, [RED_ADMIRAL], top_k=100))
    given = given_probability(insects(steered.base_url, RED_ADMIRAL))
    body = ok(identify(steered.base_url, [RED_ADMIRAL], species_list="garden"))
    assert names(body)[0] == "Vanessa atalanta" and not body["no_match"]
    # The list's species the model gave probability (here V. atalanta alone), none else.
    assert set(names(body)) <= listed & given and set(names(body)) == listable(vision, given, listed)
    info = body["filters"]["species_list"]
    assert info == {"name": "garden.txt", "source": "installed", "names": 4, "unmatched": ["Notus inventus"]}
    assert body["filters"]["kept_classes"] == 3 and body["filters"]["kept_mass"] > 0.9
    assert body["filters"]["excluded_models"] == {"aiy_birds_v1": "none of its species is on garden.txt"}
    # The same list through a classifier endpoint, the name given as a form field.
    classified = ok(
        post(steered.base_url, "/v1/classify/aiy_insects_v1", RED_ADMIRAL, {"species_list": (None, "garden")})
    )
    assert names(classified) == ["Vanessa atalanta"]  # the others hold 0
    assert classified["filters"]["species_list"]["unmatched"] == ["Notus inventus"]

    nowhere = error(identify(steered.base_url, [RED_ADMIRAL], species_list="nowhere"), 404)
    assert nowhere["code"] == "species_list_not_found" and "garden" in nowhere["detail"]["available"]
    huge = error(identify(steered.base_url, [RED_ADMIRAL], species_list="huge"), 413)
    assert huge["code"] == "too_large" and "LISTS_MAX_BYTES" in huge["message"]


def test_an_uploaded_species_list_steers_away_from_the_top_species(steered):
    csv_list = (
        "scientific_name,common_name\n"
        "Heraclides cresphontes,Giant swallowtail\n"
        "Papilio glaucus,Eastern tiger swallowtail\n"
        "Papilio cresphontes,Giant swallowtail (the name GBIF accepts; the model says Heraclides)\n"
    )
    upload = {"species_list": ("swallowtails.csv", csv_list.encode(), "text/csv")}
    vision = ok(identify(steered.base_url, SWALLOWTAIL_PAIR))
    assert names(vision)[0] == "Heraclides rumiko"
    given = given_probability(*(insects(steered.base_url, photo) for photo in SWALLOWTAIL_PAIR))
    files = [("image", (p.name, p.read_bytes())) for p in SWALLOWTAIL_PAIR] + list(upload.items())
    body = ok(httpx.post(f"{steered.base_url}/v1/identify", files=files, timeout=60))
    # Papilio glaucus is kept, but the model gave it 0 in both photos: no guess.
    kept = {"Heraclides cresphontes", "Papilio glaucus"}
    assert body["filters"]["kept_classes"] == len(kept)
    assert names(body) == ["Heraclides cresphontes"] and set(names(body)) == listable(vision, given, kept)
    assert body["filters"]["species_list"] == {
        "name": "swallowtails.csv", "source": "upload", "names": 3, "unmatched": ["Papilio cresphontes"],
    }  # fmt: skip
    assert body["results"][0]["score"] > 0.99 and not body["no_match"]
    both = error(
        post(steered.base_url, "/insect_url", SWALLOWTAIL_PAIR[0], upload, species_list="garden"), 400
    )
    assert "once" in both["message"]
    big = {"species_list": ("big.txt", b"Vanessa atalanta\n" * LIST_CAP, "text/plain")}
    refused = error(post(steered.base_url, "/insect_url", SWALLOWTAIL_PAIR[0], big), 413)
    assert refused["code"] == "too_large"
    nothing = {"species_list": ("none.txt", b"Notus inventus\n", "text/plain")}
    empty = error(post(steered.base_url, "/insect_url", SWALLOWTAIL_PAIR[0], nothing), 400)
    assert empty["detail"]["unmatched"] == ["Notus inventus"]


# --- the place: off, prior, filter ------------------------------------------------------------


def weight(records: int) -> float:
    return FLOOR + (1 - FLOOR) * records / (records + HALF_SATURATION)


def test_geo_off_prior_and_filter_give_three_explained_rankings_for_one_observation(steered):
    fake = steered.gbif
    fake.reset_occurrences()
    vision = ok(identify(steered.base_url, SWALLOWTAIL_PAIR, top_k=10))
    first, second = names(vision)[:2]
    assert (first, second) == ("Heraclides rumiko", "Heraclides cresphontes")
    # The third: the first linked species the model gave 0 in both photos (the classifier lists
    # its zeros in label order), recorded a little: kept by the filter, yet no guess.
    classified_pair = [insects(steered.base_url, photo) for photo in SWALLOWTAIL_PAIR]
    given = given_probability(*classified_pair)
    third = next(
        n
        for n in names(classified_pair[0])
        if n not in given and (steered.taxa.get(n) or {}).get("speciesKey")
    )
    records = {second: 400, third: 3}  # the vision's top species never recorded in the cell
    fake.occurrences = [
        (40.0, 41.0, -76.0, -75.0, None, {steered.taxa[n]["speciesKey"]: c for n, c in records.items()})
    ]
    answers = {
        mode: ok(identify(steered.base_url, SWALLOWTAIL_PAIR, top_k=10, geo=mode, **PLACE))
        for mode in ("off", "prior", "filter")
    }
    off, prior, filtered = answers["off"], answers["prior"], answers["filter"]
    assert sum(fake.occurrence_hits.values()) == 1  # off asks nothing; prior and filter share the cell

    # off: the place ignored, the vision's ranking.
    assert off["geo"]["status"] == "off" and off["geo"]["mode"] == "off" and off["geo"]["cell"] is None
    assert [(r["scientific_name"], r["score"]) for r in off["results"]] == [
        (r["scientific_name"], r["score"]) for r in vision["results"]
    ]
    assert all(r["geo_score"] is None and r["combined_score"] == r["vision_score"] for r in off["results"])

    # prior: each vision score times its weight, renormalised: the recorded species first.
    assert prior["geo"]["status"] == "applied" and prior["geo"]["mode"] == "prior"
    assert names(prior)[:2] == [second, first]
    seen = {r["scientific_name"]: r for r in prior["results"]}
    assert seen[first]["geo_score"] == pytest.approx(FLOOR) and seen[second]["geo_score"] == pytest.approx(
        weight(400)
    )
    factors = [r["combined_score"] / (r["vision_score"] * r["geo_score"]) for r in prior["results"]]
    assert max(factors) == pytest.approx(min(factors), rel=1e-4)  # one renormalisation for all
    assert all(r["score"] == r["combined_score"] for r in prior["results"])

    # filter: only the recorded species the model gave probability (the third, given 0, is
    # kept but not listed), and the vision's best (unrecorded) rolled up to its genus, which has
    # a recorded species there.
    assert filtered["geo"]["mode"] == "filter" and filtered["geo"]["recorded_species"] == 2
    assert names(filtered) == [second] and set(names(filtered)) == set(records) & given
    assert all(
        r["geo_score"] == 1.0 and r["geo_records"] == records[r["scientific_name"]]
        for r in filtered["results"]
    )
    # Renormalised over the recorded species: with what the third holds (the floor every class
    # given 0 in both photos holds, unlisted, times the same factor) they sum to 1 but for the
    # background class's own floor.
    assert set(names(vision)) == given and all(c["background_score"] == 0.0 for c in classified_pair)
    floor = (1.0 - sum(r["score"] for r in vision["results"])) / (1022 - len(vision["results"]))
    factor = filtered["results"][0]["score"] / filtered["results"][0]["vision_score"]
    third_holds = factor * floor * len(set(records) - given)
    assert sum(r["score"] for r in filtered["results"]) + third_holds == pytest.approx(1.0, abs=1e-3)
    rollup = filtered["rollup"]
    assert (rollup["rank"], rollup["name"]) == ("genus", "Heraclides")
    assert first in rollup["reason"] and "has no record in the cell" in rollup["reason"]
    assert rollup["score"] == pytest.approx(
        seen[first]["vision_score"] + seen[second]["vision_score"], rel=1e-3
    )
    assert not filtered["no_match"]

    assert len({tuple(names(a)) for a in answers.values()}) == 3  # three different rankings
    figure(
        "geo on the swallowtail pair near Philadelphia: "
        + "; ".join(
            f"{m}: " + ", ".join(f"{r['scientific_name']} {r['score']:.3f}" for r in a["results"][:2])
            for m, a in answers.items()
        )
    )

    # The classifier endpoint takes the place too: one photo, the model's own probabilities.
    classified = ok(post(steered.base_url, "/insect_url", SWALLOWTAIL_PAIR[0], geo="filter", **PLACE))
    assert names(classified) == [second] and classified["rollup"]["name"] == "Heraclides"
    # Its vision gave the recorded species under MIN_SCORE together: said, not hidden.
    assert classified["no_match_reason"] == "filtered_out"
    assert classified["results"][0]["vision_score"] < 0.1
    error(identify(steered.base_url, SWALLOWTAIL_PAIR, geo="filter"), 400)  # a filter needs a place


# --- thresholds ---------------------------------------------------------------------------------


def test_min_score_and_rollup_threshold_per_request(steered):
    overlay = vanessa_overlay()
    plain = ok(post(steered.base_url, "/insect_url", overlay))
    assert plain["rollup"]["name"] == "Vanessa" and plain["no_match"] is False  # V. cardui 0.758 < 0.8
    low = ok(post(steered.base_url, "/insect_url", overlay, rollup_threshold=0.5))
    assert low["rollup"] is None and low["thresholds"] == {"min_score": 0.1, "rollup_threshold": 0.5}
    strict = ok(post(steered.base_url, "/insect_url", overlay, min_score=0.9))
    assert strict["no_match_reason"] == "low_confidence"
    pair = ok(identify(steered.base_url, SWALLOWTAIL_PAIR, rollup_threshold=0.7))
    assert pair["rollup"]["name"] == "Heraclides" and pair["thresholds"]["rollup_threshold"] == 0.7
    assert ok(identify(steered.base_url, SWALLOWTAIL_PAIR))["rollup"] is None  # 0.716 < 0.8
    assert ok(identify(steered.base_url, [CHICKADEE], min_score=0.99))["no_match_reason"] == "low_confidence"


@pytest.mark.parametrize(
    "params",
    [
        {"min_score": 1.5},
        {"min_score": -0.1},
        {"min_score": "high"},
        {"rollup_threshold": 0},
        {"rollup_threshold": 1.01},
        {"geo": "sideways"},
        {"taxon": ""},
    ],
    ids=lambda p: "-".join(f"{k}={v}" for k, v in p.items()),
)
def test_out_of_bounds_steering_is_refused_naming_the_parameter(steered, params):
    """The service answers every invalid parameter 400 ``invalid_parameters`` (docs/api.md, Errors),
    so do these."""
    for route in ("/v1/identify", "/insect_url"):
        response = post(steered.base_url, route, DRAGONFLY, **params)
        body = error(response, 400)
        assert body["code"] == "invalid_parameters" and next(iter(params)) in body["message"], body


def test_openapi_documents_the_steering_parameters(steered):
    spec = httpx.get(f"{steered.base_url}/openapi.json", timeout=10).json()
    for path in ("/v1/identify", "/insect_url", "/v1/classify/{model_name}"):
        operation = spec["paths"][path]["post"]
        params = {p["name"]: p for p in operation["parameters"]}
        assert {"taxon", "species_list", "geo", "min_score", "rollup_threshold", "lat", "lon", "date"} <= set(
            params
        )
        assert all(params[name].get("description") for name in ("taxon", "species_list", "geo", "min_score"))
        bounds = params["min_score"]["schema"]["anyOf"][0]
        assert (bounds["minimum"], bounds["maximum"]) == (0.0, 1.0)
        assert params["rollup_threshold"]["schema"]["anyOf"][0]["exclusiveMinimum"] == 0.0
        assert set(params["geo"]["schema"]["enum"]) == {"off", "prior", "filter"}
        assert {"400", "404", "409", "413"} <= set(operation["responses"])
        body = operation["requestBody"]["content"]["multipart/form-data"]["schema"]["$ref"].rsplit("/", 1)[1]
        assert "species_list" in spec["components"]["schemas"][body]["properties"]
    schemas = spec["components"]["schemas"]
    assert {"vision_score", "geo_score", "combined_score"} <= set(
        schemas["ObservedSpeciesResult"]["properties"]
    )
    assert {"vision_score", "geo_score", "combined_score"} <= set(schemas["ClassifiedSpecies"]["properties"])
    assert {"filters", "thresholds"} <= set(schemas["IdentifyResponse"]["properties"])
    assert {"filters", "geo", "thresholds"} <= set(schemas["ClassificationResponse"]["properties"])


# --- the command line ---------------------------------------------------------------------------


def test_the_cli_identify_steers_as_the_endpoint_does(steered):
    garden = steered.lists / "garden.txt"
    run = subprocess.run(
        [sys.executable, "-m", "app", "identify", str(RED_ADMIRAL), "--taxon", "Vanessa",
         "--species-list", str(garden), "--min-score", "0.2", "--json"],
        cwd=REPO, env={**os.environ, **steered.env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    cli = json.loads(run.stdout)
    served = ok(
        identify(steered.base_url, [RED_ADMIRAL], taxon="Vanessa", species_list="garden", min_score=0.2)
    )
    assert [(r["scientific_name"], round(r["score"], 6)) for r in cli["results"]] == [
        (r["scientific_name"], round(r["score"], 6)) for r in served["results"]
    ]
    # Pieris rapae is no Vanessa; V. cardui is kept, but the model gave it 0: no guess.
    vision = ok(identify(steered.base_url, [RED_ADMIRAL], top_k=100))
    given = given_probability(insects(steered.base_url, RED_ADMIRAL))
    assert names(cli) == ["Vanessa atalanta"]
    assert set(names(cli)) == listable(vision, given, {"Vanessa atalanta", "Vanessa cardui"})
    assert cli["filters"]["species_list"]["source"] == "upload"  # a file given: read as an upload
    assert cli["filters"]["species_list"]["unmatched"] == ["Notus inventus"]
    assert cli["thresholds"]["min_score"] == 0.2
    refused = subprocess.run(
        [sys.executable, "-m", "app", "identify", str(RED_ADMIRAL), "--taxon", "Nonexistentia",
         "--groups", "insect"],
        cwd=REPO, env={**os.environ, **steered.env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert refused.returncode == 2 and "Nonexistentia" in refused.stderr


def test_the_cli_classify_steers_as_the_endpoint_does(steered):
    run = subprocess.run(
        [sys.executable, "-m", "app", "classify", str(MONARCHS[0]), "--model", "aiy_insects_v1",
         "--taxon", "Nymphalidae", "--json"],
        cwd=REPO, env={**os.environ, **steered.env}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    cli = json.loads(run.stdout)
    served = ok(post(steered.base_url, "/v1/classify/aiy_insects_v1", MONARCHS[0], taxon="Nymphalidae"))
    assert cli["results"] == served["results"] and cli["filters"] == served["filters"]
    assert cli["filters"]["taxon"]["rank"] == "family" and names(cli) == ["Danaus plexippus"]
