"""The "seen nearby" geo prior (app/enrich/geo.py) against the local fake GBIF over loopback, with
a real SQLite cache file: cell arithmetic, one occurrence search per cell (cached, also across a
restart), the month, facetLimit, the weights and their blending, and GBIF failing (never raised,
never hanging, a stale answer when there is one)."""

from __future__ import annotations

import asyncio
import math
import random
import socket
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from app.enrich.gbif import open_gbif
from app.enrich.geo import (
    Cell,
    GeoPrior,
    GeoUnavailable,
    NearbyCounts,
    blend,
    prior_weights,
    species_counts,
)
from app.enrich.taxonomy import Taxon, linked_from_match
from app.settings import GbifSettings, GeoPriorSettings
from tests.fakes.gbif import FakeGbif, synthesized

SPARROW, ROBIN, BLACKBIRD, WREN = 5231190, 2492462, 9515886, 2493064
LONDON = (51.51, -0.13)  # cell 51,52 / -1,0
LONDON_CELL = ("51,52", "-1,0", None)
PARIS = (48.86, 2.35)  # cell 48,49 / 2,3


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGbif]:
    with FakeGbif() as fake:  # this module's own: the tests steer and count it
        yield fake


@pytest.fixture
def fake(server: FakeGbif) -> FakeGbif:
    server.reset_occurrences()
    server.delay = server.stall = 0.0
    server.occurrences = [
        (51, 52, -1, 0, None, {SPARROW: 1234, ROBIN: 987, BLACKBIRD: 3}),
        (48, 49, 2, 3, None, {SPARROW: 50, WREN: 7}),
    ]
    return server


PRIOR_TIMEOUT = 0.5


def settings_for(fake: FakeGbif, tmp_path: Path, **overrides: object) -> GbifSettings:
    base: dict[str, object] = {
        "api_url": fake.base_url,
        "cache_path": tmp_path / "cache" / "gbif.sqlite",
        "backoff": 0.01,
    }
    return GbifSettings(**{**base, **overrides})  # type: ignore[arg-type]


def prior_settings(**overrides: object) -> GeoPriorSettings:
    return GeoPriorSettings(**{"timeout": PRIOR_TIMEOUT, **overrides})  # type: ignore[arg-type]


def lookups(
    settings: GbifSettings,
    *places: tuple[float, float] | tuple[float, float, int | None],
    prior_with: GeoPriorSettings | None = None,
) -> list[NearbyCounts | GeoUnavailable]:
    """One service lifetime: the lookups in turn through one client and cache."""

    async def run() -> list[NearbyCounts | GeoUnavailable]:
        async with open_gbif(settings) as client:
            prior = GeoPrior(client, prior_with or prior_settings())
            return [await prior.counts(*place) for place in places]

    return asyncio.run(run())


def timed(settings: GbifSettings, place: tuple[float, float]) -> tuple[NearbyCounts | GeoUnavailable, float]:
    started = time.monotonic()
    (answer,) = lookups(settings, place)
    return answer, time.monotonic() - started


# -- cells ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("lat", "lon", "size", "box"),
    [
        (51.51, -0.13, 1.0, (51, 52, -1, 0)),
        (-33.87, 151.21, 1.0, (-34, -33, 151, 152)),  # Sydney: south and east
        (-0.5, -0.5, 1.0, (-1, 0, -1, 0)),  # just below the equator and west of Greenwich
        (0.0, 0.0, 1.0, (0, 1, 0, 1)),  # a boundary belongs to the cell it starts
        (-12.0, -77.0, 1.0, (-12, -11, -77, -76)),
        (90.0, 180.0, 1.0, (89, 90, 179, 180)),  # the top edges belong to the last cells
        (-90.0, -180.0, 1.0, (-90, -89, -180, -179)),
        (51.3, 0.25, 0.1, (51.3, 51.4, 0.2, 0.3)),  # 51.3 / 0.1 is 512.999... in floating point
        (88.0, 179.0, 7.0, (84, 90, 175, 180)),  # a size not dividing 90 or 180: clipped
        (-90.0, -180.0, 7.0, (-90, -84, -180, -175)),
        (45.0, 90.0, 2.5, (45, 47.5, 90, 92.5)),
    ],
)
def test_the_cell_holds_the_point_on_multiples_of_its_size(lat, lon, size, box):
    cell = Cell.containing(lat, lon, size)
    assert (cell.south, cell.north, cell.west, cell.east) == pytest.approx(box, abs=1e-12)
    assert cell.south <= lat <= cell.north and cell.west <= lon <= cell.east
    assert cell.month is None


def test_cells_tile_the_globe():
    rng = random.Random(7)
    for size in (0.1, 0.25, 1.0, 3.0, 7.0, 10.0):
        for _ in range(2000):
            lat, lon = rng.uniform(-90, 90), rng.uniform(-180, 180)
            cell = Cell.containing(lat, lon, size)
            assert cell.south <= lat <= cell.north and cell.west <= lon <= cell.east, (lat, lon, size)
            for low, high, limit in ((cell.south, cell.north, 90), (cell.west, cell.east, 180)):
                assert high - low == pytest.approx(size) or high == limit or low == -limit
                aligned = low / size
                assert low == -limit or abs(aligned - round(aligned)) < 1e-6, (low, size)
            # Every point of a cell is in that same cell: one cache entry, one GBIF call.
            inner = Cell.containing((cell.south + cell.north) / 2, (cell.west + cell.east) / 2, size)
            assert inner == cell


def test_the_query_names_the_cell_as_gbif_ranges():
    assert Cell.containing(51.51, -0.13).query() == {"decimalLatitude": "51,52", "decimalLongitude": "-1,0"}
    assert Cell.containing(51.35, 0.25, 0.1, month=6).query() == {
        "decimalLatitude": "51.3,51.4",
        "decimalLongitude": "0.2,0.3",
        "month": "6",
    }
    assert Cell.containing(-0.5, -0.5).query()["decimalLatitude"] == "-1,0"  # no "-0"


@pytest.mark.parametrize(
    ("lat", "lon", "size", "month"),
    [(90.5, 0, 1, None), (0, -180.01, 1, None), (math.nan, 0, 1, None), (0, 0, 0, None), (0, 0, 1, 13)],
)
def test_impossible_places_are_refused(lat, lon, size, month):
    with pytest.raises(ValueError):
        Cell.containing(lat, lon, size, month)


def test_an_impossible_place_is_no_prior_and_no_call(fake, tmp_path):
    (answer,) = lookups(settings_for(fake, tmp_path), (91.0, 0.0))
    assert isinstance(answer, GeoUnavailable) and "latitude 91" in answer.reason
    assert sum(fake.occurrence_hits.values()) == 0


# -- one call per cell, cached ---------------------------------------------------------------


def test_one_upstream_call_per_cell_cached_across_a_restart(fake, tmp_path):
    settings = settings_for(fake, tmp_path)
    first, same_cell, paris = lookups(settings, LONDON, (51.99, -0.99), PARIS)
    assert isinstance(first, NearbyCounts) and first.cache == "miss"
    assert first.counts == {SPARROW: 1234, ROBIN: 987, BLACKBIRD: 3} and first.total == 2224
    assert first.cell == Cell(51, 52, -1, 0)
    assert isinstance(same_cell, NearbyCounts) and same_cell.cache == "hit"
    assert same_cell.counts == first.counts and same_cell.total == first.total
    assert (
        isinstance(paris, NearbyCounts) and paris.cache == "miss" and paris.counts == {SPARROW: 50, WREN: 7}
    )
    assert fake.occurrence_hits == {LONDON_CELL: 1, ("48,49", "2,3", None): 1}
    assert fake.hits == {}  # occurrence searches are not species matches

    sent = fake.occurrence_queries[0]
    assert sent["facet"] == "speciesKey" and sent["limit"] == "0" and sent["facetLimit"] == "1000"
    assert sent["occurrenceStatus"] == "PRESENT" and "month" not in sent

    (restarted,) = lookups(settings, LONDON)  # a new client on the same cache file
    assert isinstance(restarted, NearbyCounts) and restarted.cache == "hit"
    assert restarted.counts == first.counts
    assert fake.occurrence_hits[LONDON_CELL] == 1


def test_concurrent_photos_in_one_cell_share_one_call(fake, tmp_path):
    fake.delay = 0.2
    settings = settings_for(fake, tmp_path)

    async def burst() -> list[NearbyCounts | GeoUnavailable]:
        async with open_gbif(settings) as client:
            prior = GeoPrior(client, prior_settings())
            return await asyncio.gather(*(prior.counts(51.1 + i / 20, -0.5) for i in range(8)))

    answers = asyncio.run(burst())
    assert all(isinstance(a, NearbyCounts) and a.counts[SPARROW] == 1234 for a in answers)
    assert fake.occurrence_hits == {LONDON_CELL: 1}


def test_the_month_is_in_the_query_and_the_cache_key(fake, tmp_path):
    fake.occurrences = [
        (51, 52, -1, 0, 6, {SPARROW: 10}),
        (51, 52, -1, 0, 12, {ROBIN: 20}),
        (51, 52, -1, 0, None, {WREN: 1}),  # a row for every month
    ]
    settings = settings_for(fake, tmp_path)
    june, december, any_month, june_again = lookups(
        settings, (*LONDON, 6), (*LONDON, 12), (*LONDON, None), (*LONDON, 6)
    )
    assert isinstance(june, NearbyCounts) and june.counts == {SPARROW: 10, WREN: 1} and june.cell.month == 6
    assert isinstance(december, NearbyCounts) and december.counts == {ROBIN: 20, WREN: 1}
    assert isinstance(any_month, NearbyCounts) and any_month.counts == {SPARROW: 10, ROBIN: 20, WREN: 1}
    assert isinstance(june_again, NearbyCounts) and june_again.counts == june.counts
    assert [a.cache for a in (june, december, any_month, june_again)] == ["miss", "miss", "miss", "hit"]
    assert fake.occurrence_hits == {("51,52", "-1,0", "6"): 1, ("51,52", "-1,0", "12"): 1, LONDON_CELL: 1}

    with sqlite3.connect(settings.cache_path) as db:
        keys = sorted(key for (key,) in db.execute("SELECT key FROM responses"))
    assert len(keys) == 3 and all(key.startswith(f"{fake.base_url}/occurrence/search?") for key in keys)
    assert sum("month=6" in key for key in keys) == 1 and sum("month=12" in key for key in keys) == 1


def test_facet_limit_keeps_the_most_recorded_species(fake, tmp_path):
    fake.occurrences = [(51, 52, -1, 0, None, {1000 + n: n for n in range(1, 51)})]
    (answer,) = lookups(settings_for(fake, tmp_path), LONDON, prior_with=prior_settings(facet_limit=10))
    assert isinstance(answer, NearbyCounts)
    assert sorted(answer.counts) == [1000 + n for n in range(41, 51)]  # the top 10 by records
    assert answer.total == sum(range(1, 51))  # GBIF's count is every record, not the facet's
    assert fake.occurrence_queries[-1]["facetLimit"] == "10"


def test_the_prior_settings_are_bounded_and_read_from_their_variables(monkeypatch):
    monkeypatch.setenv("GEO_PRIOR_CELL_DEG", "0.5")
    monkeypatch.setenv("GBIF_PRIOR_TIMEOUT", "1.5")  # the old name, still read
    settings = GeoPriorSettings()
    assert settings.cell_deg == 0.5 and settings.timeout == 1.5
    assert (settings.floor, settings.half_saturation, settings.facet_limit) == (0.1, 5.0, 1000)
    for bad in ({"cell_deg": 0}, {"cell_deg": 11}, {"floor": 0}, {"floor": 1.5},
                {"half_saturation": 0}, {"facet_limit": 5}, {"timeout": 0}):  # fmt: skip
        with pytest.raises(ValidationError):
            GeoPriorSettings(**bad)


# -- weights ---------------------------------------------------------------------------------------


def test_weights_follow_the_documented_rule():
    counts = {SPARROW: 1000, ROBIN: 5, BLACKBIRD: 1}
    keys = [SPARROW, ROBIN, BLACKBIRD, WREN, None]
    weights = prior_weights(counts, keys, floor=0.1, half_saturation=5.0)
    expected = [0.1 + 0.9 * 1000 / 1005, 0.1 + 0.9 * 0.5, 0.1 + 0.9 * 1 / 6, 0.1, 1.0]
    assert weights.dtype == np.float64 and weights.tolist() == pytest.approx(expected)
    assert weights[3] == 0.1  # unrecorded: the floor
    assert weights[4] == 1.0  # unlinked: left as the model scored it
    assert prior_weights({}, [], floor=0.1, half_saturation=5.0).shape == (0,)
    with pytest.raises(ValueError):
        prior_weights(counts, keys, floor=0.0, half_saturation=5.0)
    with pytest.raises(ValueError):
        prior_weights(counts, keys, floor=0.1, half_saturation=0.0)


def test_weigh_reports_the_unlinked_candidates(fake, tmp_path):
    (nearby,) = lookups(settings_for(fake, tmp_path), LONDON)
    assert isinstance(nearby, NearbyCounts)
    prior = GeoPrior(None, prior_settings(floor=0.2, half_saturation=10.0))  # type: ignore[arg-type]  # no client
    weighed = prior.weigh(nearby, [None, ROBIN, WREN, None])
    assert weighed.unlinked == (0, 3)
    assert weighed.weights.tolist() == pytest.approx([1.0, 0.2 + 0.8 * 987 / 997, 0.2, 1.0])


def test_blending_demotes_an_unrecorded_species_without_removing_it():
    # Vision favours WREN (never recorded in London's cell) over SPARROW (recorded 1234 times).
    probabilities = np.array([0.5, 0.3, 0.2])
    weights = prior_weights({SPARROW: 1234}, [WREN, SPARROW, None], floor=0.1, half_saturation=5.0)
    blended = blend(probabilities, weights)
    assert blended.sum() == pytest.approx(1.0)
    assert blended.tolist() == pytest.approx(
        (probabilities * weights / (probabilities * weights).sum()).tolist()
    )
    assert blended.argmax() == 1  # the recorded sparrow now leads
    assert 0 < blended[0] < probabilities[0]  # demoted, still there
    assert blended[0] / blended[2] == pytest.approx(0.1 * 0.5 / 0.2)  # by floor, against weight 1
    # A vision score confident enough still beats the prior.
    assert blend([0.97, 0.03, 0.0], weights).argmax() == 0
    # Species-only scores (a background class left out) keep their total.
    assert blend([0.3, 0.2, 0.1], weights).sum() == pytest.approx(0.6)
    assert blend([0.0, 0.0, 0.0], weights).tolist() == [0.0, 0.0, 0.0]
    with pytest.raises(ValueError):
        blend([0.5, 0.5], weights)


def test_species_keys_from_the_taxonomy_and_gbifs_facets():
    linked = linked_from_match("Vanessa cardui", synthesized("Vanessa cardui"))
    assert (
        linked.taxon is not None and linked.taxon.species_key == synthesized("Vanessa cardui")["speciesKey"]
    )
    synonym = Taxon(usageKey=111, speciesKey=222, rank="SPECIES", status="SYNONYM")
    assert synonym.species_key == 222  # occurrences are filed under the accepted species
    subspecies = Taxon(usageKey=333, speciesKey=444, rank="SUBSPECIES")
    assert subspecies.species_key == 444
    older = Taxon.model_validate({"usageKey": 555, "rank": "SPECIES", "canonicalName": "Aus bus"})
    assert older.speciesKey is None and older.species_key == 555  # files written before speciesKey
    assert Taxon(usageKey=666, rank="GENUS").species_key is None
    assert Taxon(usageKey=777).species_key is None

    payload = {
        "count": 12,
        "facets": [
            {"field": "SPECIES_KEY", "counts": [{"name": "5231190", "count": 10}, {"name": "x", "count": 1}]},
            {"field": "MONTH", "counts": [{"name": "6", "count": 12}]},
        ],
    }
    assert species_counts(payload) == ({SPARROW: 10}, 12)  # other facets and odd entries ignored
    assert species_counts({"count": 0, "facets": []}) == ({}, 0)


# -- GBIF failing --------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize(
    ("failure", "reason", "calls"),
    [
        ("500", "GBIF answered HTTP 500", 3),  # retried twice, then given up
        ("429", "rate limited", 3),
        ("stall", "did not answer within 0.5 s", 1),
        ("invalid json", "invalid JSON", 1),  # not retried: GBIF would answer it again
        ("no facets", "without its count and facets", 1),
        ("down", "unreachable", 0),
    ],
)
def test_gbif_failing_is_no_prior_quickly_and_is_not_cached(fake, tmp_path, failure, reason, calls):
    settings = settings_for(fake, tmp_path)
    if failure in ("500", "429"):
        fake.occurrence_status = int(failure)
    elif failure == "stall":
        fake.occurrence_stall = 2.0
    elif failure == "invalid json":
        fake.occurrence_invalid_json = True
    elif failure == "no facets":
        fake.occurrence_answer = lambda query: {"offset": 0, "limit": 0, "results": []}
    else:
        settings = settings_for(fake, tmp_path, api_url=f"http://127.0.0.1:{_closed_port()}/v1")

    answer, elapsed = timed(settings, LONDON)
    assert isinstance(answer, GeoUnavailable), answer
    assert reason in answer.reason
    assert elapsed < PRIOR_TIMEOUT + 0.4, elapsed  # never hangs, whatever GBIF does
    assert fake.occurrence_hits[LONDON_CELL] == calls

    fake.reset_occurrences()
    if "occurrence_answer" in vars(fake):
        del fake.occurrence_answer
    fake.occurrences = [(51, 52, -1, 0, None, {SPARROW: 1})]
    (after,) = lookups(settings_for(fake, tmp_path), LONDON)
    assert isinstance(after, NearbyCounts) and after.cache == "miss"  # the failure was not cached


def test_a_429_is_retried_and_answered(fake, tmp_path):
    fake.occurrence_fail_next = [429]
    (answer,) = lookups(settings_for(fake, tmp_path), LONDON)
    assert isinstance(answer, NearbyCounts) and answer.cache == "miss" and answer.counts[SPARROW] == 1234
    assert fake.occurrence_hits[LONDON_CELL] == 2


@pytest.mark.parametrize("failure", ["500", "stall"])
def test_an_expired_answer_is_served_when_gbif_fails(fake, tmp_path, failure):
    settings = settings_for(fake, tmp_path, cache_ttl_s=0.3)
    (fresh,) = lookups(settings, LONDON)
    assert isinstance(fresh, NearbyCounts) and fresh.cache == "miss"
    time.sleep(0.4)
    if failure == "500":
        fake.occurrence_status = 500
    else:
        fake.occurrence_stall = 2.0
    stale, elapsed = timed(settings, LONDON)
    assert isinstance(stale, NearbyCounts), stale
    assert stale.cache == "stale" and stale.counts == fresh.counts and stale.total == fresh.total
    assert elapsed < PRIOR_TIMEOUT + 0.4, elapsed

    fake.occurrence_status, fake.occurrence_stall = None, 0.0
    fake.occurrences = [(51, 52, -1, 0, None, {WREN: 2})]
    (refreshed,) = lookups(settings, LONDON)  # GBIF back: asked again, the entry renewed
    assert isinstance(refreshed, NearbyCounts) and refreshed.cache == "miss" and refreshed.counts == {WREN: 2}


def test_waiting_for_a_slot_counts_against_the_prior_deadline(fake, tmp_path):
    """A photo's prior must not queue behind link-gbif: with the only slot held by a stalled
    species match, the prior gives up at GEO_PRIOR_TIMEOUT."""
    fake.stall = 1.5  # species matches only
    settings = settings_for(fake, tmp_path, max_concurrency=1, retries=0, read_timeout=3.0, total_timeout=3.0)

    async def run() -> tuple[NearbyCounts | GeoUnavailable, float]:
        async with open_gbif(settings) as client:
            prior = GeoPrior(client, prior_settings())
            match = asyncio.create_task(client.match("Vanessa cardui"))
            await asyncio.sleep(0.1)  # the match holds the slot
            started = time.monotonic()
            answer = await prior.counts(*LONDON)
            elapsed = time.monotonic() - started
            assert (await match).payload["canonicalName"] == "Vanessa cardui"
            return answer, elapsed

    answer, elapsed = asyncio.run(run())
    assert isinstance(answer, GeoUnavailable) and "within 0.5 s" in answer.reason
    assert elapsed < PRIOR_TIMEOUT + 0.4, elapsed
    assert fake.occurrence_hits[LONDON_CELL] == 0  # it never got to GBIF
