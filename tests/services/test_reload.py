"""services.reload: re-reading the manifest while serving, on a SavedModel the tests build (runs
without ../shared): only new or changed entries are loaded, a broken manifest changes nothing,
and the watcher picks changes up on its own."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from app.errors import ManifestInvalid
from app.models.registry import Registry, open_registry
from app.services.reload import reload_models, watch_manifest
from app.settings import AdmissionSettings, ModelSettings
from tests.services.helpers import toy_entry
from tests.support.manifests import write_manifest


@pytest.fixture
def served(tmp_path, toy_model) -> Iterator[tuple[Registry, Path, Path]]:
    """A registry serving a private copy of the toy model (its mtime is bumped), manifest paths
    relative to the manifest."""
    model_dir, labels = toy_model
    shutil.copytree(model_dir, tmp_path / "toy")
    shutil.copyfile(labels, tmp_path / "labelmap.csv")
    manifest = write_manifest(tmp_path / "models.toml", [toy_entry(Path("toy"), Path("labelmap.csv"))])
    registry = open_registry(ModelSettings(manifest=manifest), AdmissionSettings(inference_workers=1))
    assert registry.get_ready("toy_v1").state == "ready"
    yield registry, manifest, tmp_path / "toy"
    registry.close()


def bump_mtime(path: Path) -> int:
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    return path.stat().st_mtime_ns


def reload(registry: Registry, manifest: Path) -> list[str]:
    return asyncio.run(reload_models(registry, ModelSettings(manifest=manifest))).loaded


def test_reload_loads_only_new_or_changed_entries(served):
    registry, manifest, model_dir = served
    first = registry.get_any("toy_v1")
    assert reload(registry, manifest) == []
    assert registry.get_any("toy_v1") is first

    mtime = bump_mtime(model_dir)  # the same files, rewritten (a retrained model)
    assert reload(registry, manifest) == ["toy_v1"]
    second = registry.get_any("toy_v1")
    assert second is not first and second is not None
    assert second.state == "ready" and second.file_mtime_ns == mtime
    assert reload(registry, manifest) == []

    toy = toy_entry(Path("toy"), Path("labelmap.csv"))
    ghost = {**toy, "name": "ghost_v1", "file": "ghost"}
    write_manifest(manifest, [{**toy, "version": "2"}, ghost])  # an entry changed, one added
    assert reload(registry, manifest) == ["ghost_v1", "toy_v1"]
    assert registry.get_ready("toy_v1").spec.version == "2"
    missing = registry.get_any("ghost_v1")
    assert missing is not None and missing.state == "missing" and "not found" in (missing.reason or "")

    write_manifest(manifest, [{**toy, "version": "2"}])  # the ghost removed, the rest unchanged
    third = registry.get_any("toy_v1")
    assert reload(registry, manifest) == []
    assert registry.get_any("ghost_v1") is None and registry.get_any("toy_v1") is third


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[[models]]\nname = \n", "unreadable"),
        ('[[models]]\nname = "toy_v1"\ntask = "classifier"\n', "invalid"),  # no format, file, labels
        (None, "not found"),
    ],
)
def test_a_broken_manifest_is_refused_and_the_models_keep_serving(served, text, says):
    registry, manifest, _ = served
    before, model = registry.manifest, registry.get_any("toy_v1")
    if text is None:
        manifest.unlink()
    else:
        manifest.write_text(text)
    with pytest.raises(ManifestInvalid, match=says) as raised:
        reload(registry, manifest)
    assert raised.value.status == 409 and str(manifest) in raised.value.message
    assert registry.manifest is before and registry.get_any("toy_v1") is model
    ready = registry.get_ready("toy_v1")
    assert ready.predict(np.zeros((1, 224, 224, 3), np.float32)).shape == (1, 5)


def test_watch_manifest_survives_a_broken_manifest_and_loads_a_new_entry(served, caplog):
    registry, manifest, _ = served
    serving = registry.get_any("toy_v1")
    toy = toy_entry(Path("toy"), Path("labelmap.csv"))

    async def scenario() -> None:
        watcher = asyncio.create_task(watch_manifest(registry, ModelSettings(manifest=manifest), 0.05))
        try:
            manifest.write_text("[[models]]\nname = \n")  # an editor's half-saved file
            await asyncio.sleep(0.4)
            assert not watcher.done()  # logged, not fatal
            assert registry.get_any("toy_v1") is serving

            write_manifest(manifest, [toy, {**toy, "name": "toy_copy_v1"}])
            deadline = asyncio.get_running_loop().time() + 60
            while (copy := registry.get_any("toy_copy_v1")) is None or copy.state != "ready":
                assert asyncio.get_running_loop().time() < deadline, "the watcher did not load the new entry"
                await asyncio.sleep(0.05)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher

    with caplog.at_level(logging.WARNING, logger="app.services.reload"):
        asyncio.run(scenario())
    assert registry.get_any("toy_v1") is serving  # unchanged: not reloaded
    assert any("manifest not reloaded" in r.getMessage() for r in caplog.records)


def test_a_new_version_that_fails_to_load_is_refused_and_the_old_one_keeps_serving(served):
    registry, manifest, model_dir = served
    serving = registry.get_ready("toy_v1")
    batch = np.random.default_rng(0).random((1, 224, 224, 3), dtype=np.float32)
    expected = serving.predict(batch)
    for item in model_dir.rglob("*.pb"):
        item.write_bytes(b"not a model at all")  # a half-copied or corrupt upload
    bump_mtime(model_dir)

    outcome = asyncio.run(reload_models(registry, ModelSettings(manifest=manifest)))
    assert outcome.loaded == [] and set(outcome.refused) == {"toy_v1"}
    assert registry.get_ready("toy_v1") is serving and serving.refused is not None
    assert serving.refused[2] == outcome.refused["toy_v1"] != ""
    np.testing.assert_allclose(registry.get_ready("toy_v1").predict(batch), expected)
    # The same refused version is not retried on every reload; a fixed file is.
    assert asyncio.run(reload_models(registry, ModelSettings(manifest=manifest))).refused == {}


def test_the_user_manifest_is_merged_and_a_name_clash_is_refused(served):
    registry, manifest, _ = served
    toy = toy_entry(Path("toy"), Path("labelmap.csv"))
    user = manifest.with_name("local.toml")
    write_manifest(user, [{**toy, "name": "mine_v1"}])
    settings = ModelSettings(manifest=manifest)
    assert settings.user_manifest == user
    assert asyncio.run(reload_models(registry, settings)).loaded == ["mine_v1"]
    mine = registry.get_ready("mine_v1")
    assert mine.spec.manifest_file == user and registry.get_ready("toy_v1").spec.manifest_file == manifest

    write_manifest(user, [toy])  # a user entry named like a shipped one: an error, not an override
    with pytest.raises(ManifestInvalid, match="declared in both") as raised:
        asyncio.run(reload_models(registry, settings))
    assert str(manifest) in raised.value.message and str(user) in raised.value.message
    assert registry.get_any("mine_v1") is mine  # nothing changed
