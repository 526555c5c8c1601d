"""The production embedder's path (a SavedModel feature vector, 299x299 float32 in [0, 1]) on a
small model the tests build: the iNat InceptionV3 itself is not available here."""

from __future__ import annotations

import io
import itertools
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from tests.support.env import service_env
from tests.support.images import encode, photo
from tests.support.manifests import embedder_entry, write_manifest
from tests.support.models import build_embedder_savedmodel
from tests.support.server import REPO, ServiceProcess

SPECIES = ["Aus bus", "Cus dus", "Eus fus", "Gus hus", "Ius jus", "Kus lus"]


def variant(species: int, k: int) -> Image.Image:
    """Photo k of a made-up species (its own colours: a channel permutation of one scene),
    cropped and lit a little differently each time."""
    order = list(itertools.permutations(range(3)))[species]
    base = Image.fromarray(np.asarray(photo(400, 300, seed=k))[..., order])
    left, top = 4 * k, 3 * k
    crop = base.crop((left, top, left + 360, top + 270))
    return ImageEnhance.Brightness(crop).enhance(0.9 + 0.04 * k)


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("savedmodel-lookup")
    model = build_embedder_savedmodel(root / "embedder")
    manifest = write_manifest(root / "models.toml", [embedder_entry(model)])
    for s, name in enumerate(SPECIES):
        folder = root / "photos" / name.replace(" ", "_")
        folder.mkdir(parents=True)
        for k in range(5):  # photo 5 (k=5) is held out
            (folder / f"{k}.png").write_bytes(encode(variant(s, k), "PNG"))
    return {"root": root, "manifest": manifest, "photos": root / "photos", "index": root / "index"}


@pytest.fixture(scope="module")
def service(setup, artifacts) -> Iterator[ServiceProcess]:
    env = {**os.environ, "MODELS_MANIFEST": str(setup["manifest"])}
    build = subprocess.run(
        [sys.executable, "-m", "app", "build-index", str(setup["photos"]), "--out", str(setup["index"]),
         "--embedder", "test_embedder", "--dims", "16", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert "30 photos of 6 species, flat index of 16-d vectors, PCA keeps" in build.stdout, build.stdout
    proc = ServiceProcess(
        service_env(setup["manifest"], INDEX_DIR=str(setup["index"])), artifacts / "lookup-savedmodel.log"
    ).start()
    yield proc
    proc.stop()


def test_savedmodel_embedder_index_identifies_held_out_photos(service):
    for s, name in enumerate(SPECIES):
        data = encode(variant(s, 5), "JPEG", quality=92)
        response = httpx.post(f"{service.base_url}/img_url", files={"image": ("q.jpg", data)}, timeout=60)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["index"]["embedder"] == "test_embedder" and body["index"]["dim"] == 16
        assert body["results"][0]["scientific_name"] == name


def test_savedmodel_lookup_equals_the_model_run_in_process(service, setup):
    """The server's vector for a photo is the SavedModel's own output, projected by the stored PCA."""
    import tensorflow as tf

    from app.index.artifacts import IndexDir
    from tests.support.reference import reference_pixels

    image = variant(2, 1)  # an indexed photo: its nearest neighbour is itself
    data = encode(image, "PNG")
    body = httpx.post(f"{service.base_url}/img_url", files={"image": ("p.png", data)}, timeout=60).json()

    pixels = reference_pixels(Image.open(io.BytesIO(data)), 299).astype(np.float32) / 255.0
    module = tf.saved_model.load(str(setup["root"] / "embedder"))
    features = module.signatures["serving_default"](images=tf.constant(pixels[np.newaxis]))["feature_vector"]
    index = IndexDir(setup["index"]).load()
    sims, rows = index.search(index.project(features.numpy()), 1)
    assert index.labels[index.rows[rows[0][0]]].scientific_name == body["results"][0]["scientific_name"]
    assert body["results"][0]["similarity"] == pytest.approx(float(sims[0][0]), abs=1e-4)
    assert body["results"][0]["similarity"] == pytest.approx(1.0, abs=1e-4)


def test_index_writes_over_http_are_off_without_an_admin_token(service):
    response = httpx.post(
        f"{service.base_url}/v1/index/items",
        files={"image": ("p.png", encode(variant(0, 1), "PNG"))},
        data={"scientific_name": "Aus bus"},
        headers={"Authorization": "Bearer anything"},
    )
    assert response.status_code == 403 and "ADMIN_TOKEN" in response.json()["error"]["message"]


def test_no_pca_when_there_are_fewer_photos_than_dimensions(setup, tmp_path):
    env = {**os.environ, "MODELS_MANIFEST": str(setup["manifest"])}
    build = subprocess.run(
        [sys.executable, "-m", "app", "build-index", str(setup["photos"]), "--out", str(tmp_path / "index"),
         "--embedder", "test_embedder", "--no-progress"],  # default --dims 128 > 30 photos
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    assert "30 photos of 6 species, flat index of 64-d vectors;" in build.stdout, build.stdout
    assert not list((tmp_path / "index").glob("v-*/pca.npz"))
