"""Faults while serving, each on the real server (uvicorn over loopback), with real files broken
the way they break in production; nothing under test is mocked:

- a model file overwritten with garbage and a reload asked for: the old model keeps answering,
  the reload and GET /v1/models say why the new file was refused;
- the index's ``current`` link pointing at a version that is not there: /img_url and
  /v1/index answer 503 ``index_unavailable`` with the reason, /health/ready says so, and
  the server recovers without a restart once the link is fixed;
- the index volume full (a tmpfs) or read-only (a read-only bind mount) while photos are
  added: 507 ``insufficient_storage`` / 503 ``index_unavailable``, the published version and its
  answers untouched, no partial version left; the next write after the fault goes through;
- the GBIF cache file overwritten with garbage, before start and while serving: /query_gbif
  still answers (from the fake GBIF), a warning is logged, and the file is rebuilt as a valid
  cache that caches again.

The model and index tests use the real insects model in ../shared (skipped without it); the
GBIF cache tests need no model. The volume faults need real mounts (root with CAP_SYS_ADMIN):
skipped, with the reason, where mounting is refused.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.gbif import FakeGbif
from tests.support.env import gbif_env, service_env
from tests.support.manifests import INSECTS, aiy_entry, insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

TOKEN = "faults-admin-token-91d2"
ADMIN = {"Authorization": f"Bearer {TOKEN}"}


def needs_shared(test: Any) -> Any:
    """The real insects model and the Leeds photos from ../shared."""
    return pytest.mark.shared(pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)(test))


INDEXED = ("Danaus plexippus", "Vanessa atalanta")  # 4 photos each in the small index
ADDED = "Pieris rapae"  # what the writes try to add


# --- helpers ------------------------------------------------------------------------------------


@contextmanager
def serving(env: dict[str, str], log: Path, *, wait_ready: bool = True) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(env, log)
    proc.env.pop("REQUIRE_ALL_MODELS", None)
    try:
        if wait_ready:
            proc.start()
        else:  # no model to be ready: wait for the app to answer at all (its start-up is done)
            proc.spawn()
            _wait_live(proc)
        yield proc
    finally:
        proc.stop()


def _wait_live(proc: ServiceProcess, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.proc is not None and proc.proc.poll() is None, proc.log()
        try:
            if httpx.get(f"{proc.base_url}/health/live", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server never answered:\n{proc.log()}")


def error_of(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code, error
    return dict(error)


def lookup(base_url: str, photo: Path) -> httpx.Response:
    return httpx.post(f"{base_url}/img_url", files={"image": (photo.name, photo.read_bytes())}, timeout=60)


def answer_of(response: httpx.Response) -> list[tuple[str, float]]:
    assert response.status_code == 200, response.text
    return [(r["scientific_name"], round(r["score"], 6)) for r in response.json()["results"]]


def add_items(base_url: str, photos: list[Path], name: str = ADDED) -> httpx.Response:
    files = [("image", (p.name, p.read_bytes(), "image/jpeg")) for p in photos]
    return httpx.post(
        f"{base_url}/v1/index/items", files=files, data={"scientific_name": name}, headers=ADMIN, timeout=120
    )


def visible(index_dir: Path) -> list[str]:
    """What another reader of the folder sees: every entry but the writers' lock."""
    return sorted(p.name for p in index_dir.iterdir() if p.name != ".lock")


def swap_link(link: Path, target: str) -> None:
    """Points ``link`` at ``target`` the way a publisher does: a new link renamed over it."""
    tmp = link.with_name(f".faults-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(target)
    tmp.replace(link)


# --- the small real index (the insects model's pre-logits, built by the real CLI) ---------------


@pytest.fixture(scope="module")
def photos() -> dict[str, list[Path]]:
    by_name: dict[str, list[Path]] = {}
    for image, name in leeds(SHARED):
        by_name.setdefault(name, []).append(image)
    return by_name


@pytest.fixture(scope="module")
def embedder_manifest(tmp_path_factory) -> Path:
    return write_manifest(
        tmp_path_factory.mktemp("faults-models") / "models.toml", [insects_features_entry()]
    )


@pytest.fixture(scope="module")
def built_index(photos, embedder_manifest, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faults-index")
    for name in INDEXED:
        folder = root / "photos" / name.replace(" ", "_")
        folder.mkdir(parents=True)
        for image in photos[name][:4]:
            (folder / image.name).symlink_to(image)
    out = root / "index"
    env = {**os.environ, "MODELS_MANIFEST": str(embedder_manifest), "INFERENCE_WORKERS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "app", "build-index", str(root / "photos"), "--out", str(out),
         "--embedder", "aiy_insects_features", "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return out


def copy_index(built: Path, to: Path) -> Path:
    shutil.copytree(built, to, symlinks=True)  # `current` is a relative link
    return to


def index_env(manifest: Path, index_dir: Path) -> dict[str, str]:
    return service_env(manifest, INDEX_DIR=str(index_dir), ADMIN_TOKEN=TOKEN)


# --- (a) a model file replaced by garbage, then a reload ----------------------------------------


@needs_shared
@pytest.mark.parametrize("how", ["overwritten", "replaced"])
def test_a_model_file_replaced_by_garbage_is_refused_on_reload_and_the_old_model_keeps_serving(
    tmp_path, artifacts, how
):
    name = "faulty_insects_v1"
    source = aiy_entry(*INSECTS)
    folder = tmp_path / "models" / name
    folder.mkdir(parents=True)
    model = folder / "model.tflite"
    shutil.copyfile(source["file"], model)
    entry = {k: v for k, v in source.items() if k != "group"} | {"name": name, "file": f"{name}/model.tflite"}
    manifest = write_manifest(tmp_path / "models" / "models.toml", [entry])
    photo = SHARED / "samples" / "Micrathyria_hagenii_01.bmp"

    def classify(base_url: str) -> list[tuple[str, float]]:
        response = httpx.post(
            f"{base_url}/v1/classify/{name}", files={"image": (photo.name, photo.read_bytes())}, timeout=60
        )
        return answer_of(response)

    with serving(service_env(manifest, ADMIN_TOKEN=TOKEN), artifacts / f"faults-model-{how}.log") as server:
        url = server.base_url
        before = classify(url)
        assert before[0][0] == "Micrathyria hagenii"
        garbage = b"\x00garbage, not a flatbuffer\xff" * 4096
        if how == "overwritten":  # `cp garbage model.tflite`: the same inode, truncated and rewritten
            with model.open("r+b") as fh:
                fh.truncate(0)
                fh.write(garbage)
        else:  # a new file renamed over the old one (an upload that finished, but is garbage)
            staged = folder / ".upload"
            staged.write_bytes(garbage)
            staged.replace(model)

        reloaded = httpx.post(f"{url}/v1/models/reload", headers=ADMIN, timeout=120)
        assert reloaded.status_code == 200, reloaded.text
        body = reloaded.json()
        assert body["reloaded"] == [] and set(body["refused"]) == {name}, body
        reason = body["refused"][name]
        assert "TFLite" in reason, reason  # says what is wrong with the file
        listed = {m["name"]: m for m in httpx.get(f"{url}/v1/models", timeout=30).json()["models"]}
        assert listed[name]["state"] == "ready" and listed[name]["refused"] == reason

        assert classify(url) == before  # the old model, bit for bit the same answer
        ready = httpx.get(f"{url}/health/ready", timeout=30)
        assert ready.status_code == 200 and ready.json()["models"][name] == "ready"

        # The good file back: the next reload loads it, and the refusal is gone.
        shutil.copyfile(source["file"], model)
        again = httpx.post(f"{url}/v1/models/reload", headers=ADMIN, timeout=120).json()
        assert again["reloaded"] == [name] and again["refused"] == {}, again
        listed = {m["name"]: m for m in httpx.get(f"{url}/v1/models", timeout=30).json()["models"]}
        assert listed[name]["state"] == "ready" and listed[name]["refused"] is None
        assert classify(url) == before


# --- (b) `current` pointing at a version that is not there -------------------------------------


@needs_shared
def test_current_pointing_at_a_missing_version_is_a_503_with_the_reason_until_the_link_is_fixed(
    built_index, embedder_manifest, photos, tmp_path, artifacts
):
    index_dir = copy_index(built_index, tmp_path / "index")
    good = (index_dir / "current").readlink().name
    photo = photos[INDEXED[0]][10]  # not indexed
    with serving(index_env(embedder_manifest, index_dir), artifacts / "faults-index-link.log") as server:
        url = server.base_url
        before = answer_of(lookup(url, photo))
        assert before[0][0] == INDEXED[0]
        pid = server.proc.pid if server.proc else None

        swap_link(index_dir / "current", "v-20260101T000000Z-gone00")  # a version deleted by hand
        for response in (lookup(url, photo), httpx.get(f"{url}/v1/index", timeout=30)):
            error = error_of(response, 503, "index_unavailable")
            assert "v-20260101T000000Z-gone00" in error["message"], error
            assert "does not exist" in error["message"], error
            assert error["detail"]["state"] == "refused"
        # A write cannot extend a version that is not there: refused the same way, nothing written.
        listing = visible(index_dir)
        error_of(add_items(url, photos[ADDED][:2]), 503, "index_unavailable")
        assert visible(index_dir) == listing
        ready = httpx.get(f"{url}/health/ready", timeout=30)
        assert ready.status_code == 200 and ready.json()["index"] == "refused"  # the models still serve

        swap_link(index_dir / "current", good)  # fixed: served again on the next request, no restart
        assert answer_of(lookup(url, photo)) == before
        assert httpx.get(f"{url}/v1/index", timeout=30).json()["version"] == good
        assert httpx.get(f"{url}/health/ready", timeout=30).json()["index"] == "ready"
        assert server.proc is not None and server.proc.pid == pid and server.proc.poll() is None


@needs_shared
def test_a_server_started_on_a_missing_version_serves_it_once_the_folder_is_restored(
    built_index, embedder_manifest, photos, tmp_path, artifacts
):
    """The link untouched, the folder it names away at start and then put back (a restore)."""
    index_dir = copy_index(built_index, tmp_path / "index")
    good = (index_dir / "current").readlink().name
    (index_dir / good).rename(tmp_path / "away")
    photo = photos[INDEXED[1]][10]
    with serving(index_env(embedder_manifest, index_dir), artifacts / "faults-index-restore.log") as server:
        url = server.base_url
        error = error_of(lookup(url, photo), 503, "index_unavailable")
        assert good in error["message"] and "does not exist" in error["message"], error
        assert httpx.get(f"{url}/health/ready", timeout=30).json()["index"] == "refused"

        (tmp_path / "away").rename(index_dir / good)
        restored = lookup(url, photo)
        assert restored.status_code == 200, restored.text
        assert answer_of(restored)[0][0] == INDEXED[1]


# --- (c) the index volume full or read-only while photos are added -----------------------------


def _mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def _umount(path: Path) -> None:
    if subprocess.run(["umount", str(path)], capture_output=True).returncode != 0:
        subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextmanager
def mounted(*args: str, at: Path) -> Iterator[Path]:
    at.mkdir(parents=True, exist_ok=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs or a read-only bind mount needs root")
    try:
        _mount(*args, str(at))
    except (OSError, subprocess.CalledProcessError) as exc:
        stderr = getattr(exc, "stderr", "") or exc
        pytest.skip(f"mount {' '.join(args)} refused here ({str(stderr).strip()}): cannot simulate the fault")
    try:
        yield at
    finally:
        _umount(at)


def fill(volume: Path) -> Path:
    """Fills the file system until it says ENOSPC; returns the filler to delete."""
    filler = volume / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    try:
        for chunk in (65536, 512):  # then the last few blocks
            try:
                while True:
                    os.write(fd, b"\0" * chunk)
            except OSError:
                pass
    finally:
        os.close(fd)
    return filler


def _the_published_index_is_untouched(url: str, index_dir: Path, version: str, listing: list[str],
                                      photo: Path, answer: list[tuple[str, float]]) -> None:  # fmt: skip
    assert httpx.get(f"{url}/v1/index", timeout=30).json()["version"] == version
    assert (index_dir / "current").readlink().name == version
    assert visible(index_dir) == listing  # no staging folder, no stray link, no new version
    assert answer_of(lookup(url, photo)) == answer


@needs_shared
def test_a_full_index_volume_is_a_507_and_the_published_index_is_untouched(
    built_index, embedder_manifest, photos, tmp_path, artifacts
):
    with mounted("-t", "tmpfs", "-o", "size=4m", "tmpfs", at=tmp_path / "volume") as volume:
        index_dir = copy_index(built_index, volume / "index")
        version = (index_dir / "current").readlink().name
        photo = photos[INDEXED[0]][12]
        with serving(index_env(embedder_manifest, index_dir), artifacts / "faults-index-full.log") as server:
            url = server.base_url
            answer = answer_of(lookup(url, photo))
            listing = visible(index_dir)
            filler = fill(volume)

            error = error_of(add_items(url, photos[ADDED][:3]), 507, "insufficient_storage")
            assert "No space left on device" in error["message"] and str(index_dir) in error["message"]
            _the_published_index_is_untouched(url, index_dir, version, listing, photo, answer)
            assert httpx.get(f"{url}/health/ready", timeout=30).json()["index"] == "ready"

            filler.unlink()  # space again: the same request goes through, no restart
            added = add_items(url, photos[ADDED][:3])
            assert added.status_code == 201, added.text
            new = added.json()["index"]
            assert new["version"] != version and new["n_vectors"] == 8 + 3
            assert httpx.get(f"{url}/v1/index", timeout=30).json()["version"] == new["version"]
            assert (index_dir / "current").readlink().name == new["version"]


@needs_shared
def test_a_read_only_index_volume_is_a_503_and_the_published_index_is_untouched(
    built_index, embedder_manifest, photos, tmp_path, artifacts
):
    source = copy_index(built_index, tmp_path / "rw" / "index")
    with mounted("--bind", str(source), at=tmp_path / "ro") as index_dir:
        try:
            _mount("-o", "remount,ro,bind", str(index_dir))
        except subprocess.CalledProcessError as exc:
            pytest.skip(f"a read-only remount is refused here ({exc.stderr.strip()}): cannot simulate EROFS")
        version = (index_dir / "current").readlink().name
        photo = photos[INDEXED[1]][12]
        with serving(index_env(embedder_manifest, index_dir), artifacts / "faults-index-ro.log") as server:
            url = server.base_url
            answer = answer_of(lookup(url, photo))
            listing = visible(index_dir)

            error = error_of(add_items(url, photos[ADDED][:3]), 503, "index_unavailable")
            assert "Read-only file system" in error["message"] and str(index_dir) in error["message"]
            assert error["detail"]["state"] == "read_only"
            _the_published_index_is_untouched(url, index_dir, version, listing, photo, answer)

            _mount("-o", "remount,rw,bind", str(index_dir))  # writable again: no restart needed
            added = add_items(url, photos[ADDED][:3])
            assert added.status_code == 201, added.text
            assert (index_dir / "current").readlink().name == added.json()["index"]["version"] != version


# --- (d) the GBIF cache file corrupted ----------------------------------------------------------

GARBAGE = b"\xde\xad\xbe\xef"  # no valid SQLite page starts like this: damage SQLite must notice


@pytest.fixture
def gbif(fake_gbif: FakeGbif) -> FakeGbif:
    fake_gbif.fail_next.clear()
    fake_gbif.fail_names.clear()
    fake_gbif.none_names.clear()
    fake_gbif.hits.clear()
    fake_gbif.stall = fake_gbif.delay = 0.0
    return fake_gbif


@pytest.fixture(scope="module")
def no_models(tmp_path_factory) -> Path:
    """The GBIF endpoint needs no model: a manifest whose one entry is missing on disk."""
    folder = tmp_path_factory.mktemp("faults-gbif")
    (folder / "labels.txt").write_text("a\nb\n")
    entry = {"name": "ghost_v1", "task": "classifier", "format": "tflite", "file": "ghost.tflite",
             "labels": "labels.txt"}  # fmt: skip
    return write_manifest(folder / "models.toml", [entry])


def cache_env(manifest: Path, fake: FakeGbif, cache: Path) -> dict[str, str]:
    # Generous GBIF timeouts: these tests are about the cache, not a slow GBIF on a busy machine.
    return gbif_env(manifest, fake, cache) | {"GBIF_READ_TIMEOUT": "5", "GBIF_TOTAL_TIMEOUT": "15"}


def gbif_get(url: str, name: str) -> httpx.Response:
    return httpx.get(f"{url}/query_gbif", params={"name": name}, timeout=30)


def assert_a_valid_cache(path: Path, holds: int) -> None:
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT count(*) FROM responses").fetchone()[0] >= holds
    finally:
        db.close()


def test_a_gbif_cache_file_corrupt_before_start_is_rebuilt_and_caches_again(
    no_models, gbif, tmp_path, artifacts
):
    cache = tmp_path / "cache" / "gbif.sqlite"
    cache.parent.mkdir()
    cache.write_bytes(GARBAGE * 8192)
    env = cache_env(no_models, gbif, cache)
    with serving(env, artifacts / "faults-gbif-before.log", wait_ready=False) as server:
        first = gbif_get(server.base_url, "Passer domesticus")
        assert first.status_code == 200, first.text
        assert first.json()["usageKey"] == 5231190 and first.headers["x-cache"] == "miss"
        assert gbif.hits["Passer domesticus"] == 1
        again = gbif_get(server.base_url, "Passer domesticus")
        assert again.status_code == 200 and again.headers["x-cache"] == "hit"
        assert gbif.hits["Passer domesticus"] == 1  # cached again, in the rebuilt file
        assert_a_valid_cache(cache, holds=1)
        assert "gbif.sqlite is corrupt" in server.log() and "rebuilt" in server.log()
    assert cache.with_name("gbif.sqlite.corrupt").read_bytes() == GARBAGE * 8192  # kept for a look
    assert_a_valid_cache(cache, holds=1)


def test_a_gbif_cache_file_corrupted_while_serving_is_rebuilt_and_requests_still_answer(
    no_models, gbif, tmp_path, artifacts
):
    cache = tmp_path / "cache" / "gbif.sqlite"
    env = cache_env(no_models, gbif, cache)
    names = [f"Vanessa species{i}" for i in range(40)]
    with serving(env, artifacts / "faults-gbif-fill.log", wait_ready=False) as server:
        for name in names:  # a cache with some history, on disk after a clean stop
            assert gbif_get(server.base_url, name).headers["x-cache"] == "miss"
    assert_a_valid_cache(cache, holds=len(names))

    with serving(env, artifacts / "faults-gbif-while.log", wait_ready=False) as server:
        url = server.base_url
        assert gbif_get(url, names[0]).headers["x-cache"] == "hit"
        size = cache.stat().st_size
        with cache.open("r+b") as fh:  # damaged in place under the open connection
            fh.write(GARBAGE * (size // len(GARBAGE)))

        answers = [gbif_get(url, name) for name in names[1:]]
        assert all(r.status_code == 200 for r in answers), [r.text for r in answers if r.status_code != 200]
        assert answers[-1].json()["canonicalName"] == names[-1]
        assert "gbif.sqlite is corrupt" in server.log()
        assert gbif.hits[names[-1]] == 2  # asked again: the damaged cache could not answer
        repeat = gbif_get(url, names[-1])
        assert repeat.status_code == 200 and repeat.headers["x-cache"] == "hit"  # the new file caches
        assert gbif.hits[names[-1]] == 2
        assert_a_valid_cache(cache, holds=1)
