"""services.index_writes: photos of a species added to the live index without a rebuild; the new
version is published, served at once, and seen by another store on the same folder."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from app.enrich.taxonomies import TaxonomyBook
from app.identification.lookup import Lookup
from app.imaging.photo import Photo
from app.index.artifacts import IndexDir
from app.index.store import IndexStore
from app.services.index_writes import IndexWriter
from app.settings import IndexSettings, RankingSettings
from tests.services.helpers import MAX_PIXELS, photos_in

pytestmark = pytest.mark.shared

NEW = "Vanessa cardui"  # left out of the build
OTHER_NEW = "Pieris rapae"
KNOWN = "Danaus plexippus"


def lookup_on(directory: Path, registry, runner) -> Lookup:
    store = IndexStore(directory, registry)
    store.refresh()
    assert store.state == "ready", store.reason
    return Lookup(store, runner, TaxonomyBook(), IndexSettings(), RankingSettings(), max_pixels=MAX_PIXELS)


def photos(paths: list[Path]) -> list[Photo]:
    return [Photo(p.read_bytes(), "upload", name=p.name) for p in paths]


def top_names(lookup: Lookup, paths: list[Path]) -> list[str]:
    return [asyncio.run(lookup.identify(p)).species[0].label.scientific_name for p in photos(paths)]


def test_adding_photos_publishes_a_version_that_finds_the_new_species(
    leeds_index, leeds_split, real_registry, runner, tmp_path
):
    directory = tmp_path / "index"
    shutil.copytree(leeds_index, directory, symlinks=True)  # `current` is a relative link
    lookup = lookup_on(directory, real_registry, runner)
    assert lookup.store is not None
    writer = IndexWriter(lookup, runner, max_pixels=MAX_PIXELS)
    before = lookup.store.dir.current_version()
    held_new = [p for p, _ in photos_in(leeds_split["held"], {NEW})]
    assert len(held_new) == 5 and NEW not in top_names(lookup, held_new)

    added_paths = [p for p, _ in photos_in(leeds_split["extra"], {NEW})][:10]
    added = asyncio.run(writer.add(photos(added_paths), NEW, "Painted Lady"))
    assert (added.added, added.species, added.new_species) == (10, NEW, True)
    version = lookup.store.dir.current_version()
    assert version != before and version == added.index.manifest.version
    assert added.index.manifest.parent == before
    assert (added.index.manifest.n_vectors, added.index.manifest.n_species) == (210, 9)
    assert lookup.store.get()[0] is added.index  # served at once, no refresh needed

    found = top_names(lookup, held_new)
    assert found.count(NEW) >= 4, found
    answer = asyncio.run(lookup.identify(photos(held_new[:1])[0]))
    assert answer.species[0].label.common_name == "Painted Lady"

    # More photos of a species the index knows: not new, no new label.
    held_known = [p for p, _ in photos_in(leeds_split["held"], {KNOWN})][:2]
    known = asyncio.run(writer.add(photos(held_known), KNOWN, None))
    assert (known.added, known.new_species) == (2, False)
    assert (known.index.manifest.n_vectors, known.index.manifest.n_species) == (212, 9)
    assert known.index.manifest.parent == version != known.index.manifest.version
    assert [label.scientific_name for label in known.index.labels].count(KNOWN) == 1

    # On disk for any other process: a fresh load is the last version, with every photo.
    on_disk = IndexDir(directory).load()
    assert on_disk.manifest.version == known.index.manifest.version and on_disk.manifest.n_vectors == 212
    assert IndexDir(leeds_index).load().manifest.n_species == 8  # the original is untouched


def test_a_version_published_by_another_writer_is_picked_up_by_current(
    leeds_index, leeds_split, real_registry, runner, tmp_path
):
    directory = tmp_path / "index"
    shutil.copytree(leeds_index, directory, symlinks=True)
    serving = lookup_on(directory, real_registry, runner)
    other = lookup_on(directory, real_registry, runner)  # e.g. another replica on the volume

    paths = [p for p, _ in photos_in(leeds_split["extra"], {OTHER_NEW})][:8]
    added = asyncio.run(IndexWriter(other, runner, max_pixels=MAX_PIXELS).add(photos(paths), OTHER_NEW, None))
    assert added.new_species and added.index.manifest.n_species == 9
    assert serving.store is not None and serving.store.stale

    index, _ = asyncio.run(serving.current())
    assert index.manifest.version == added.index.manifest.version
    held = [p for p, _ in photos_in(leeds_split["held"], {OTHER_NEW})]
    assert top_names(serving, held).count(OTHER_NEW) >= 4

    # The serving side's writer now extends that version, and knows the species already.
    again = asyncio.run(
        IndexWriter(serving, runner, max_pixels=MAX_PIXELS).add(photos(held[:1]), OTHER_NEW, None)
    )
    assert again.new_species is False and again.index.manifest.parent == added.index.manifest.version
