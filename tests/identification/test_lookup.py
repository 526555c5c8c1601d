"""identification.lookup: identify by similarity over a real species index (Leeds butterflies embedded
by the insects model's pre-logits): held-out photos, low confidence, no index, the offline
identify_files path and the index's own taxonomy."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from app.enrich.taxonomies import TaxonomyBook
from app.errors import IndexUnavailable
from app.identification.lookup import Lookup
from app.imaging.photo import Photo
from app.index.store import IndexStore
from app.settings import IndexSettings, RankingSettings
from tests.identification.helpers import Recorder, grey_png
from tests.services.helpers import LEFT_OUT, MAX_PIXELS, photos_in

pytestmark = pytest.mark.shared


@pytest.fixture(scope="module")
def store(leeds_index, real_registry) -> IndexStore:
    store = IndexStore(leeds_index, real_registry)
    store.refresh()
    assert store.state == "ready", store.reason
    return store


def make_lookup(store, runner, ranking: RankingSettings | None = None, **kwargs) -> Lookup:
    return Lookup(
        store,
        runner,
        TaxonomyBook(),
        IndexSettings(),
        ranking or RankingSettings(),
        max_pixels=MAX_PIXELS,
        **kwargs,
    )


def file_photo(path: Path) -> Photo:
    return Photo(path.read_bytes(), "file", name=path.name)


@pytest.fixture(scope="module")
def held_indexed(leeds_split) -> list[tuple[Path, str]]:
    """The held-out photos of the 8 indexed species: 5 each, none of them in the index."""
    indexed = {p.name.replace("_", " ") for p in leeds_split["build"].iterdir()}
    photos = photos_in(leeds_split["held"], indexed)
    assert len(photos) == 40 and not indexed & set(LEFT_OUT)
    return photos


def test_a_held_out_photo_ranks_its_species_first(store, runner, held_indexed):
    lookup = make_lookup(store, runner)
    path, name = held_indexed[0]
    answer = asyncio.run(lookup.identify(file_photo(path)))
    assert answer.no_match_reason is None and answer.index is store.get()[0]
    top = answer.species[0]
    assert (top.rank, top.label.scientific_name) == (1, name)
    assert top.score > 0.9 and top.neighbours >= 10 and 0.5 < top.similarity < 0.9999  # not itself
    assert (
        answer.timings is not None and answer.timings.search_ms is not None and answer.timings.search_ms > 0
    )
    assert answer.photo is not None and answer.image is not None and answer.image.format == "JPEG"


def test_held_out_photos_through_identify_files_and_identify_agree(store, runner, held_indexed):
    lookup = make_lookup(store, runner)
    index, embedder = store.get()
    paths = [path for path, _ in held_indexed]
    found = lookup.identify_files(index, embedder, paths, workers=2)
    assert found.failures == [] and None not in found.results
    tops = [answer.species[0].label.scientific_name for answer in found.results if answer is not None]
    accuracy = sum(top == name for top, (_, name) in zip(tops, held_indexed, strict=True)) / len(tops)
    assert accuracy >= 0.95, accuracy  # measured 1.0 (40/40)

    for i in (0, 7, 13, 26, 39):
        single = asyncio.run(lookup.identify(file_photo(paths[i])))
        offline = found.results[i]
        assert offline is not None
        assert [h.label.scientific_name for h in single.species] == [
            h.label.scientific_name for h in offline.species
        ]
        assert [h.score for h in single.species] == pytest.approx(
            [h.score for h in offline.species], abs=1e-5
        )


def test_an_indexed_photo_finds_itself(store, leeds_split, runner):
    path, name = photos_in(leeds_split["build"])[0]
    answer = asyncio.run(make_lookup(store, runner).identify(file_photo(path), top_k=3))
    assert answer.species[0].label.scientific_name == name
    assert answer.species[0].similarity == pytest.approx(1.0, abs=1e-4)


def test_low_confidence_follows_min_score(store, runner, held_indexed):
    grey = Photo(grey_png(), "upload")
    loose = asyncio.run(make_lookup(store, runner).identify(grey))
    assert loose.no_match_reason is None
    assert 0.1 < loose.species[0].score < 0.9  # measured 0.63: the vote is split
    assert len(loose.species) == 5 and sum(h.score for h in loose.species) <= 1.0 + 1e-6

    strict = make_lookup(store, runner, RankingSettings(min_score=0.9))
    unsure = asyncio.run(strict.identify(grey))
    assert unsure.no_match and unsure.no_match_reason == "low_confidence"
    assert [h.label for h in unsure.species] == [h.label for h in loose.species]  # still listed
    sure = asyncio.run(strict.identify(file_photo(held_indexed[0][0])))
    assert sure.no_match_reason is None and sure.species[0].score >= 0.9


def test_without_an_index_current_raises_index_unavailable(runner, real_registry, tmp_path):
    offline = make_lookup(None, runner)
    with pytest.raises(IndexUnavailable, match="no species index is being served"):
        asyncio.run(offline.current())
    with pytest.raises(IndexUnavailable):
        asyncio.run(offline.identify(Photo(grey_png(), "upload")))

    empty = IndexStore(tmp_path / "nothing", real_registry)
    empty.refresh()
    assert empty.state == "absent"
    with pytest.raises(IndexUnavailable, match="absent") as raised:
        asyncio.run(make_lookup(empty, runner).current())
    assert raised.value.detail == {"state": "absent"}


def test_the_observer_hears_the_embedder(store, runner, held_indexed):
    recorder = Recorder()
    lookup = make_lookup(store, runner, observer=recorder)
    asyncio.run(lookup.identify(Photo(held_indexed[0][0].read_bytes(), "url", fetch_ms=12.0)))
    asyncio.run(lookup.identify(file_photo(held_indexed[1][0])))
    assert [list(infer_ms) for _, infer_ms in recorder.photos] == [["aiy_insects_features"]] * 2
    assert recorder.fetches == [(12.0, held_indexed[0][0].stat().st_size)]


def test_offline_identify_files_joins_the_taxonomy_under_root_and_rolls_up(
    store, runner, tmp_path, held_indexed
):
    index, embedder = store.get()
    genus = {"usageKey": 4242, "genus": "Testgenus", "genusKey": 4242, "family": "Testidae", "familyKey": 99}
    lines = [
        json.dumps(
            {"name": label.scientific_name, "matchType": "EXACT", "taxon": {**genus, "usageKey": 5000 + i}}
        )
        for i, label in enumerate(index.labels)
    ]
    (tmp_path / "gbif_taxonomy.jsonl").write_text("\n".join(lines) + "\n")
    grey = tmp_path / "grey.png"
    grey.write_bytes(grey_png())
    offline = make_lookup(None, runner, root=tmp_path)
    assert offline.root == tmp_path
    found = offline.identify_files(index, embedder, [grey, held_indexed[0][0]], workers=1)
    split, sure = found.results
    assert split is not None and sure is not None
    assert split.rollup is not None  # no species reaches 0.8; all of them are in Testgenus
    assert (split.rollup.rank, split.rollup.name, split.rollup.usageKey) == ("genus", "Testgenus", 4242)
    assert split.rollup.score == pytest.approx(1.0, abs=1e-4)
    assert all(h.taxon is not None and h.taxon.genus == "Testgenus" for h in split.species)
    assert sure.rollup is None  # a confident species: no rollup

    # The served index reads its taxonomy beside its versions, not under another root.
    served = asyncio.run(make_lookup(store, runner).identify(Photo(grey_png(), "upload")))
    assert served.rollup is None and all(h.taxon is None for h in served.species)
