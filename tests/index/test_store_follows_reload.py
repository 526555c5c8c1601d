"""A model reload that replaces the index's embedder reaches the lookup: the store notices the new
entry, checks the index against it, and embeds queries with it (refusing the index when the new
file is another model)."""

from __future__ import annotations

import csv
import os
import shutil

import pytest

from app.index.builder import build_index
from app.index.store import IndexStore
from app.models.manifest import load_manifest
from app.models.registry import open_registry
from app.settings import AdmissionSettings, ModelSettings
from tests.support.manifests import insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.shared import HAS_SHARED, MODELS, NO_SHARED, SHARED

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]
NAME = "aiy_insects_features"


def test_store_follows_an_embedder_replaced_by_a_reload(tmp_path):
    model = tmp_path / "insects.tflite"
    shutil.copyfile(MODELS / "aiy_insects_v1" / "model.tflite", model)
    manifest = write_manifest(tmp_path / "models.toml", [insects_features_entry(file=str(model))])
    photos = tmp_path / "photos.csv"
    with photos.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows((str(p), name) for p, name in leeds(SHARED)[::30])  # 10 photos, 10 species
    settings = ModelSettings(manifest=manifest)
    registry = open_registry(settings, AdmissionSettings(inference_workers=1))
    build_index(photos, tmp_path / "index", registry.get_ready(NAME), max_pixels=10**8, progress=False)
    store = IndexStore(tmp_path / "index", registry)
    store.refresh()
    first = store.get()[1]
    assert store.state == "ready" and first is registry.get_any(NAME)

    assert registry.reload(load_manifest(manifest)).loaded == [] and not store.stale  # nothing changed

    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))  # the same bytes, rewritten
    assert registry.reload(load_manifest(manifest)).loaded == [NAME]
    assert store.stale
    store.refresh()
    assert store.state == "ready" and store.get()[1] is registry.get_any(NAME) is not first

    shutil.copyfile(MODELS / "aiy_birds_v1" / "model.tflite", model)  # another model under the name
    assert registry.reload(load_manifest(manifest)).loaded == [NAME]
    store.refresh()
    assert store.state == "refused", store.reason
    registry.close()
