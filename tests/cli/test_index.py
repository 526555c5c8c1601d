"""`build-index`, `add-to-index` and `index-info` on a few Leeds photos (one folder per species)
with the real insects embedder; a build killed mid-way resumes; folders that are no index are
refused."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.cli.runner import cli_env, command, first_of_each, ok, refused, run_cli, species_folders
from tests.support.manifests import write_manifest
from tests.support.server import REPO

EMBEDDER = "aiy_insects_features"
BUILD_OPTIONS = f"--embedder {EMBEDDER} --dims 16 --no-progress"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, leeds_photos) -> dict[str, Path]:
    """build: 10 photos each of 5 species; extra: 6 of a sixth species, 2 more of the first and a
    file that is no photo."""
    root = tmp_path_factory.mktemp("index-photos")
    build = first_of_each(leeds_photos, species=5, per_species=10)
    sixth = sorted({name for _, name in leeds_photos})[5]
    first = build[0][1]
    extra = [(p, n) for p, n in leeds_photos if n == sixth][:6]
    extra += [(p, n) for p, n in leeds_photos if n == first][10:12]
    species_folders(root / "extra", extra)
    (root / "extra" / sixth.replace(" ", "_") / "notes.jpg").write_text("field notes, not a photo")
    return {"build": species_folders(root / "build", build), "extra": root / "extra"}


@pytest.fixture(scope="module")
def built(photos, real_manifest, tmp_path_factory) -> dict[str, Any]:
    out = tmp_path_factory.mktemp("index") / "index"
    result = ok(run_cli("build-index", photos["build"], "--out", out, BUILD_OPTIONS, manifest=real_manifest))
    return {"out": out, "stdout": result.stdout}


def info(index: Path, manifest: Path) -> dict[str, Any]:
    manifest_json: dict[str, Any] = json.loads(ok(run_cli("index-info", index, manifest=manifest)).stdout)
    return manifest_json


@pytest.mark.shared
def test_build_index_publishes_a_version_with_the_species_counts(built, real_manifest):
    out, stdout = built["out"], built["stdout"]
    assert stdout.startswith(f"published {out}/v-"), stdout
    assert "50 photos of 5 species, flat index of 16-d vectors, PCA keeps" in stdout, stdout
    assert "0 photos skipped, 0 chunks resumed" in stdout, stdout
    version = stdout.split(f"{out}/", 1)[1].split(":", 1)[0]
    assert (out / "current").resolve().name == version

    manifest = info(out, real_manifest)
    assert manifest["version"] == version and manifest["parent"] is None
    assert manifest["n_vectors"] == 50 and manifest["n_species"] == 5
    assert manifest["pca_dims"] == manifest["dim"] == 16 and manifest["metric"] == "cosine"
    embedder = manifest["embedder"]
    assert embedder["name"] == EMBEDDER and embedder["output_dim"] == 1280 and len(embedder["sha256"]) == 64


@pytest.mark.shared
def test_add_to_index_publishes_a_child_version(built, photos, real_manifest, tmp_path):
    index = tmp_path / "index"
    shutil.copytree(built["out"], index, symlinks=True)
    first = info(index, real_manifest)
    added = run_cli(
        "add-to-index", photos["extra"], "--index", index, "--no-progress", manifest=real_manifest
    )
    result = ok(added)
    assert result.stdout.startswith(f"published {index}/v-"), result.stdout
    assert "now 58 photos of 6 species (8 added, 1 skipped)" in result.stdout, result.stdout
    now = info(index, real_manifest)
    assert now["parent"] == first["version"] and now["version"] != first["version"]
    assert now["n_vectors"] == 58 and now["n_species"] == 6 and now["dim"] == first["dim"]
    assert info(built["out"], real_manifest)["n_vectors"] == 50  # the copy's source is untouched


@pytest.fixture
def slow_photos(tmp_path) -> dict[str, str]:
    """A Python whose photo decoding takes 40 ms more (a slow disk): the kill below lands mid-build
    however fast the machine is."""
    folder = tmp_path / "slow-photos"
    folder.mkdir()
    (folder / "sitecustomize.py").write_text(
        "import time\n\nimport PIL.Image\n\n_open = PIL.Image.open\n\n\n"
        "def _slow_open(*args, **kwargs):\n    time.sleep(0.04)\n    return _open(*args, **kwargs)\n\n\n"
        "PIL.Image.open = _slow_open\n"
    )
    return {"PYTHONPATH": str(folder)}


@pytest.mark.shared
def test_build_index_resumes_after_being_killed(photos, real_manifest, built, slow_photos, tmp_path):
    out = tmp_path / "index"
    work = out / ".work"  # the default work folder
    build = command("build-index", photos["build"], "--out", out, BUILD_OPTIONS, "--chunk-size 1")
    env = cli_env(real_manifest, INFERENCE_WORKERS="1")
    slow = {**env, **slow_photos}
    proc = subprocess.Popen(build, cwd=REPO, env=slow, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while len(list(work.glob("*.npz"))) < 4 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)  # a crash: no clean-up runs
    proc.communicate()
    done = len(list(work.glob("*.npz")))
    assert 4 <= done < 50, f"{done} chunks written before the kill"
    assert not (out / "current").exists()

    result = subprocess.run(build, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    resumed = int(result.stdout.split(" chunks resumed")[0].rsplit(" ", 1)[1])
    assert done - 1 <= resumed <= done  # every complete chunk (the one being written may be lost)
    assert not work.exists()  # the default work folder is removed on success

    # The resumed build holds the same vectors as the uninterrupted one.
    import faiss
    import numpy as np

    from app.index.artifacts import IndexDir

    a, b = IndexDir(out).load(), IndexDir(built["out"]).load()
    assert a.manifest.n_vectors == b.manifest.n_vectors == 50
    np.testing.assert_allclose(
        faiss.rev_swig_ptr(a.faiss_index.get_xb(), a.manifest.n_vectors * a.manifest.dim),  # type: ignore[attr-defined]
        faiss.rev_swig_ptr(b.faiss_index.get_xb(), b.manifest.n_vectors * b.manifest.dim),  # type: ignore[attr-defined]
        atol=1e-4,
    )


def test_a_folder_that_is_no_index_is_refused(tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", [])
    folder = tmp_path / "photos"
    (folder / "Danaus_plexippus").mkdir(parents=True)
    reason = refused(run_cli("index-info", folder, manifest=manifest))
    assert reason == f"error: no index in {folder}: build one with `python -m app build-index`", reason
    added = refused(run_cli("add-to-index", folder, "--index", folder, manifest=manifest))
    assert added.startswith(f"error: no index in {folder}"), added
    assert not list(folder.glob("v-*")) and not (folder / "current").exists()


def test_build_index_refuses_an_unknown_embedder_or_engine(tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", [])
    folder = tmp_path / "photos"
    (folder / "Danaus_plexippus").mkdir(parents=True)
    out = tmp_path / "index"
    unknown = refused(run_cli("build-index", folder, "--out", out, "--embedder nope", manifest=manifest))
    assert unknown == "error: no embedder named 'nope'", unknown
    engine = refused(
        run_cli("build-index", folder, "--out", out, "--embedder nope --engine spark", manifest=manifest)
    )
    assert engine == "error: --engine is local or ray", engine
    assert not out.exists()
