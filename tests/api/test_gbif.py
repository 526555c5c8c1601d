"""/query_gbif against a local fake GBIF on loopback: matches, misses, flags, retries, timeouts,
the bounded concurrency and the SQLite cache (across a restart, and stale when GBIF is down)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.gbif import FakeGbif
from tests.support.env import gbif_env
from tests.support.server import ServiceProcess


@pytest.fixture
def clean(fake_gbif) -> FakeGbif:
    fake = fake_gbif
    fake.fail_next.clear()
    fake.fail_names.clear()
    fake.none_names.clear()
    fake.hits.clear()
    fake.stall = fake.delay = 0.0
    return fake


@pytest.fixture(scope="module")
def cache_path(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gbif") / "cache" / "gbif.sqlite"


@pytest.fixture(scope="module")
def gbif_service(manifest, fake_gbif, cache_path, artifacts) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(gbif_env(manifest, fake_gbif, cache_path), artifacts / "gbif-service.log").start()
    yield proc
    proc.stop()


def query(service: ServiceProcess, path: str = "/query_gbif", **params: object) -> httpx.Response:
    return httpx.get(f"{service.base_url}{path}", params=params, timeout=30)


def test_an_exact_match_is_gbifs_answer(gbif_service, clean):
    for path in ("/query_gbif", "/query_gbif/"):  # the seed's trailing-slash path too, no redirect
        response = query(gbif_service, path, name="Passer domesticus")
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["usageKey"] == 5231190 and body["matchType"] == "EXACT" and body["class"] == "Aves"
        assert body["canonicalName"] == "Passer domesticus" and body["familyKey"] == 5264
        assert body["flagged"] is False and body["rank"] == "SPECIES"


def test_fuzzy_and_higherrank_matches_are_returned_flagged(gbif_service, clean):
    fuzzy = query(gbif_service, name="Passer domesticos").json()
    assert fuzzy["matchType"] == "FUZZY" and fuzzy["usageKey"] == 5231190
    assert fuzzy["flagged"] is True and "spelled" in fuzzy["flag_reason"]
    higher = query(gbif_service, name="Passer nonexistentis").json()
    assert higher["matchType"] == "HIGHERRANK" and higher["rank"] == "GENUS" and higher["flagged"] is True
    strict = query(gbif_service, name="Passer domesticos", strict="true").json()  # no fuzzy matching
    assert strict["matchType"] == "HIGHERRANK" and strict["canonicalName"] == "Passer"


def test_no_match_is_a_404_with_gbifs_reason(gbif_service, clean):
    response = query(gbif_service, name="xyzzy plugh blorp", verbose="true")
    assert response.status_code == 404
    error = response.json()["error"]
    assert error["code"] == "no_match" and "too little confidence" in error["message"]
    assert error["detail"]["matchType"] == "NONE" and error["detail"]["confidence"] == 100


def test_verbose_returns_the_alternatives(gbif_service, clean):
    body = query(gbif_service, name="Passer domesticus", verbose="true").json()
    assert body["alternatives"] and body["alternatives"][0]["matchType"] == "FUZZY"


def test_names_reach_gbif_encoded_as_they_were_given(gbif_service, clean):
    tricky = "Passer domesticus&rank=GENUS #1"
    assert query(gbif_service, name=tricky).status_code == 404  # one odd name, not a rank filter
    assert clean.hits[tricky] == 1


def test_bad_parameters_are_400(gbif_service, clean):
    assert query(gbif_service).status_code == 400
    assert query(gbif_service, name="Passer", rank="TRIBE").status_code == 400
    assert query(gbif_service, name="x" * 201).status_code == 400


def test_a_429_is_retried_and_answered(gbif_service, clean):
    clean.fail_next[:] = [429]
    response = query(gbif_service, name="Vanessa atalanta")
    assert response.status_code == 200 and response.json()["matchType"] == "EXACT"
    assert clean.hits["Vanessa atalanta"] == 2


def test_gbif_failing_is_a_quick_502_after_the_retries(gbif_service, clean):
    clean.fail_names.add("Vanessa cardui")
    started = time.monotonic()
    response = query(gbif_service, name="Vanessa cardui")
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_error"
    assert "GBIF answered HTTP 500" in response.json()["error"]["message"]
    assert clean.hits["Vanessa cardui"] == 3 and time.monotonic() - started < 2


def test_gbif_stalling_is_a_504_within_the_deadline(gbif_service, clean):
    clean.stall = 2.5
    started = time.monotonic()
    response = query(gbif_service, name="Danaus gilippus")
    elapsed = time.monotonic() - started
    assert response.status_code == 504 and response.json()["error"]["code"] == "upstream_timeout"
    assert elapsed < 3.0, elapsed


def test_concurrent_upstream_calls_are_bounded(gbif_service, clean):
    deadline = time.monotonic() + 10
    while clean.in_flight and time.monotonic() < deadline:  # abandoned stalled calls still sleeping
        time.sleep(0.05)
    clean.delay = 0.3
    clean.max_in_flight = 0

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=gbif_service.base_url, timeout=30) as client:
            names = [f"Papilio species{i}" for i in range(8)]
            responses = await asyncio.gather(*(client.get("/query_gbif", params={"name": n}) for n in names))
            return [r.status_code for r in responses]

    assert asyncio.run(burst()) == [200] * 8
    assert clean.max_in_flight == 2  # GBIF_MAX_CONCURRENCY


def test_the_cache_answers_repeats_without_gbif_and_survives_a_restart(
    manifest, gbif_service, clean, cache_path, artifacts
):
    first = query(gbif_service, name="Danaus plexippus")
    assert first.headers["x-cache"] == "miss" and clean.hits["Danaus plexippus"] == 1
    again = query(gbif_service, name="Danaus plexippus")
    assert again.headers["x-cache"] == "hit" and again.json()["usageKey"] == first.json()["usageKey"]
    assert clean.hits["Danaus plexippus"] == 1  # zero upstream calls for the repeat

    restarted = ServiceProcess(
        gbif_env(manifest, clean, cache_path), artifacts / "gbif-restarted.log"
    ).start()
    try:
        after = query(restarted, name="Danaus plexippus")
        assert after.status_code == 200 and after.headers["x-cache"] == "hit"
        assert clean.hits["Danaus plexippus"] == 1
    finally:
        restarted.stop()


def test_an_expired_answer_is_still_served_when_gbif_is_down(manifest, clean, tmp_path, artifacts):
    env = gbif_env(manifest, clean, tmp_path / "gbif.sqlite", GBIF_CACHE_TTL_S="0.5")
    service = ServiceProcess(env, artifacts / "gbif-stale.log").start()
    try:
        assert query(service, name="Papilio glaucus").headers["x-cache"] == "miss"
        time.sleep(0.6)
        clean.fail_names.add("Papilio glaucus")
        stale = query(service, name="Papilio glaucus")
        assert stale.status_code == 200 and stale.headers["x-cache"] == "stale"
        assert stale.json()["cache"] == "stale" and stale.json()["canonicalName"] == "Papilio glaucus"
        assert query(service, name="Papilio troilus").status_code == 200  # GBIF itself is fine
        clean.fail_names.add("Papilio troilus")
        assert query(service, name="Papilio polyxenes").status_code == 200
    finally:
        service.stop()
