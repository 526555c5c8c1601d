"""build-index --engine ray (Ray Data, a local Ray started by the command) against the local engine
on the Leeds photos with the real embedder: the same labels bit for bit, the same vectors within
float tolerance, the same search answers."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pytest

from app.index.artifacts import IndexDir
from tests.support.figures import figure
from tests.support.manifests import insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.server import REPO
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

pytest.importorskip("ray", reason="Ray is the optional extra .[ray]")
pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]


def build(engine: str, photos, manifest, out) -> str:
    env = {**os.environ, "MODELS_MANIFEST": str(manifest), "INFERENCE_WORKERS": "2"}
    done = subprocess.run(
        [sys.executable, "-m", "app", "build-index", str(photos), "--out", str(out),
         "--embedder", "aiy_insects_features", "--dims", "64", "--engine", engine, "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_ray_engine_builds_the_same_index(tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", [insects_features_entry()])
    photos = tmp_path / "leeds.csv"
    with photos.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows((str(p), name) for p, name in leeds(SHARED))
    print(build("local", photos, manifest, tmp_path / "local"))
    print(build("ray", photos, manifest, tmp_path / "ray"))
    local, ray = IndexDir(tmp_path / "local").load(), IndexDir(tmp_path / "ray").load()

    assert ray.labels == local.labels and np.array_equal(ray.rows, local.rows)  # bit for bit
    assert ray.manifest.embedder == local.manifest.embedder
    assert (
        (ray.manifest.n_vectors, ray.manifest.dim)
        == (local.manifest.n_vectors, local.manifest.dim)
        == (300, 64)
    )
    vectors = [index.faiss_index.reconstruct_n(0, index.faiss_index.ntotal) for index in (local, ray)]
    np.testing.assert_allclose(vectors[1], vectors[0], atol=1e-4)
    gap = float(np.abs(vectors[1] - vectors[0]).max())
    figure(f"build-index ray vs local, Leeds 300: labels identical, max vector difference {gap:.2e}")
    # And so the same neighbours for every photo.
    _, local_rows = local.search(vectors[0], 5)
    _, ray_rows = ray.search(vectors[0], 5)
    assert (local_rows[:, 0] == ray_rows[:, 0]).mean() == 1.0
