"""/img_url over a real index: Leeds butterflies embedded by the real insects model's pre-logits,
built with the real CLI, served by the real server; species added by CLI and over HTTP. (The index
commands on their own, a build resumed after a kill included, are tested in tests/cli/test_index.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.env import service_env
from tests.support.manifests import insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]

TOKEN = "test-admin-token-7f3c"
ADDED_BY_CLI = "Vanessa cardui"
ADDED_BY_HTTP = "Pieris rapae"


def folder(name: str) -> str:
    return name.replace(" ", "_")


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> dict[str, Path]:
    """Every 6th photo of a species is held out of the build; two species are left out entirely
    (to be added later without a rebuild)."""
    root = tmp_path_factory.mktemp("leeds")
    for i, (image, name) in enumerate(leeds(SHARED)):
        if name in (ADDED_BY_CLI, ADDED_BY_HTTP):
            part = "held" if i % 6 == 0 else f"extra-{folder(name)}"
        else:
            part = "held" if i % 6 == 0 else "build"
        target = root / part / folder(name)
        target.mkdir(parents=True, exist_ok=True)
        (target / image.name).symlink_to(image)
    return {p.name: p for p in root.iterdir()}


@pytest.fixture(scope="module")
def lookup_manifest(tmp_path_factory) -> Path:
    return write_manifest(tmp_path_factory.mktemp("lookup") / "models.toml", [insects_features_entry()])


def cli(*args: str, manifest: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MODELS_MANIFEST": str(manifest), "INFERENCE_WORKERS": "2"}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def index_dir(split, lookup_manifest, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "index"
    result = cli(
        "build-index",
        str(split["build"]),
        "--out",
        str(out),
        "--embedder",
        "aiy_insects_features",
        "--no-progress",
        manifest=lookup_manifest,
    )
    assert result.returncode == 0, result.stderr
    assert "published" in result.stdout and "of 8 species" in result.stdout, result.stdout
    return out


@pytest.fixture(scope="module")
def lookup_service(index_dir, lookup_manifest, artifacts) -> Iterator[ServiceProcess]:
    env = service_env(lookup_manifest, INDEX_DIR=str(index_dir), ADMIN_TOKEN=TOKEN)
    proc = ServiceProcess(env, artifacts / "lookup-service.log").start()
    yield proc
    proc.stop()


def identify(base_url: str, photo: Path, **params: object) -> dict:
    response = httpx.post(
        f"{base_url}/img_url", files={"image": (photo.name, photo.read_bytes())}, params=params, timeout=60
    )
    assert response.status_code == 200, response.text
    return response.json()


def held_out(split, species: set[str] | None = None) -> list[tuple[Path, str]]:
    photos = []
    for species_dir in sorted(split["held"].iterdir()):
        name = species_dir.name.replace("_", " ")
        if species is None or name in species:
            photos += [(p, name) for p in sorted(species_dir.iterdir())]
    return photos


def test_held_out_photos_are_identified_through_img_url(lookup_service, split, artifacts):
    indexed = {p.name.replace("_", " ") for p in split["build"].iterdir()}
    photos = held_out(split, indexed)
    correct = 0
    for photo, name in photos:
        body = identify(lookup_service.base_url, photo)
        correct += body["results"][0]["scientific_name"] == name
    accuracy = correct / len(photos)
    line = (
        f"Leeds held-out photos via /img_url (aiy_insects_features index): "
        f"top-1 {accuracy:.3f} ({correct}/{len(photos)})"
    )
    print(line)
    (artifacts / "lookup_report.txt").write_text(line + "\n")
    assert len(photos) == 40 and accuracy >= 0.85


def test_lookup_contract_scores_bounded_and_an_indexed_photo_at_distance_zero(
    lookup_service, split, image_host
):
    indexed_photo = next(next(split["build"].iterdir()).iterdir())
    body = identify(lookup_service.base_url, indexed_photo, top_k=3)
    assert body["index"]["embedder"] == "aiy_insects_features" and body["index"]["n_species"] == 8
    top = body["results"][0]
    assert top["scientific_name"] == indexed_photo.parent.name.replace("_", " ")
    assert top["similarity"] == pytest.approx(1.0, abs=1e-4)  # the photo itself: distance 0
    scores = [r["score"] for r in body["results"]]
    assert len(scores) <= 3 and all(0.0 <= s <= 1.0 for s in scores) and sum(scores) <= 1.0 + 1e-6
    assert (
        scores == sorted(scores, reverse=True)
        and [r["rank"] for r in body["results"]] == [1, 2, 3][: len(scores)]
    )
    assert body["timings_ms"]["search_ms"] is not None

    # By URL, as the original API was called.
    url = image_host.url(f"/files/leeds/{indexed_photo.name}")
    by_url = httpx.post(f"{lookup_service.base_url}/img_url", params={"img_url": url}, timeout=60).json()
    assert by_url["results"][0]["scientific_name"] == top["scientific_name"]
    assert by_url["image"]["source"] == "url"

    too_many = httpx.post(f"{lookup_service.base_url}/img_url", params={"img_url": url, "top_k": 101})
    assert too_many.status_code == 400 and too_many.json()["error"]["code"] == "invalid_parameters"
    ready = httpx.get(f"{lookup_service.base_url}/health/ready").json()
    assert ready["index"] == "ready"


def test_add_to_index_cli_adds_a_species_the_running_server_then_finds(
    lookup_service, split, index_dir, lookup_manifest, artifacts
):
    photos = held_out(split, {ADDED_BY_CLI})
    before = httpx.get(f"{lookup_service.base_url}/v1/index").json()
    for photo, _ in photos:
        names = [r["scientific_name"] for r in identify(lookup_service.base_url, photo)["results"]]
        assert ADDED_BY_CLI not in names

    result = cli(
        "add-to-index",
        str(split[f"extra-{folder(ADDED_BY_CLI)}"]),
        "--index",
        str(index_dir),
        "--no-progress",
        manifest=lookup_manifest,
    )
    assert result.returncode == 0, result.stderr
    assert "of 9 species (25 added, 0 skipped)" in result.stdout, result.stdout

    # The running server answers from the new version on its next request: no restart, no rebuild.
    after = httpx.get(f"{lookup_service.base_url}/v1/index").json()
    assert after["n_species"] == 9 and after["n_vectors"] == before["n_vectors"] + 25
    assert after["version"] != before["version"]
    found = sum(
        identify(lookup_service.base_url, p)["results"][0]["scientific_name"] == ADDED_BY_CLI
        for p, _ in photos
    )
    assert found >= 4, f"{found}/5 held-out {ADDED_BY_CLI} photos found after add-to-index"

    # A server started afresh loads the same version.
    env = service_env(lookup_manifest, INDEX_DIR=str(index_dir))
    fresh = ServiceProcess(env, artifacts / "lookup-service-fresh.log").start()
    try:
        assert httpx.get(f"{fresh.base_url}/v1/index").json()["version"] == after["version"]
    finally:
        fresh.stop()


def test_post_index_items_needs_the_admin_token_and_adds_a_species(lookup_service, split):
    url = f"{lookup_service.base_url}/v1/index/items"
    photos = sorted(split[f"extra-{folder(ADDED_BY_HTTP)}"].rglob("*.jpg"))[:12]
    files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    data = {"scientific_name": ADDED_BY_HTTP, "common_name": "Small White"}

    missing = httpx.post(url, files=files, data=data)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    wrong = httpx.post(url, files=files, data=data, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    bad_name = httpx.post(
        url, files=files, data={"scientific_name": "<script>"}, headers={"Authorization": f"Bearer {TOKEN}"}
    )
    assert bad_name.status_code == 400
    not_a_photo = httpx.post(
        url,
        files=[("image", ("x.jpg", b"GIF89a not really", "image/jpeg"))],
        data=data,
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert not_a_photo.status_code in (415, 422)
    before = httpx.get(f"{lookup_service.base_url}/v1/index").json()

    added = httpx.post(url, files=files, data=data, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120)
    assert added.status_code == 201, added.text
    body = added.json()
    assert body["added"] == 12 and body["new_species"] is True
    assert (
        body["index"]["n_vectors"] == before["n_vectors"] + 12
    )  # nothing lost, nothing from the failed calls

    photos = held_out(split, {ADDED_BY_HTTP})
    found = [identify(lookup_service.base_url, p)["results"][0] for p, _ in photos]
    assert sum(r["scientific_name"] == ADDED_BY_HTTP for r in found) >= 4
    assert any(r["common_name"] == "Small White" for r in found)


def test_an_index_from_another_embedder_is_refused(index_dir, tmp_path, artifacts):
    # Same name, other weights: the birds model's pre-logits under the insects embedder's name.
    other = insects_features_entry(file=str(SHARED / "models" / "aiy_birds_v1" / "model.tflite"))
    manifest = write_manifest(tmp_path / "models.toml", [other])
    service = ServiceProcess(
        service_env(manifest, INDEX_DIR=str(index_dir)), artifacts / "refused.log"
    ).start()
    try:
        assert httpx.get(f"{service.base_url}/health/ready").json()["index"] == "refused"
        photo = SHARED / "samples" / "Micrathyria_hagenii_01.bmp"
        response = httpx.post(f"{service.base_url}/img_url", files={"image": ("p.jpg", photo.read_bytes())})
        assert response.status_code == 503
        error = response.json()["error"]
        assert error["code"] == "index_unavailable"
        assert "built with another embedder" in error["message"] and "sha256" in error["message"]
        assert "build-index" in error["message"]
    finally:
        service.stop()
