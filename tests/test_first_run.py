"""A new user's first `make serve`: it installs the models, builds the default species index (the
Leeds butterflies of ../shared, offline embedder) and serves it, so POST /img_url answers with
species instead of 503; and everything it wrote is ignored by git.

Honest about the paths: the real `make serve` runs, with every path at its default (INDEX_DIR
volumes/index, the GBIF cache, the models volume), in a copy of this checkout (a `git clone` with
the working tree's uncommitted changes laid over it), so the real checkout's volumes/ are not
touched and the copy's `git status` before and after can be compared. Only two things point
outside the copy: this test's own virtualenv (VENV=, its install step taken as done: `make -o`)
and SHARED= (the copy has no ../shared beside it)."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from io import BytesIO
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageOps

from app.settings import environment_variables
from tests.support.figures import figure
from tests.support.git_tree import new_entries, porcelain
from tests.support.reference import LEEDS_SYNONYMS, leeds
from tests.support.server import REPO, free_port
from tests.support.shared import SHARED

pytestmark = pytest.mark.shared

VENV = Path(sys.executable).parent.parent
BUILT = re.compile(
    r"built a default species index for /img_url: (?P<photos>\d+) photos of (?P<species>\d+) species "
    r"from (?P<source>\S+), embedder (?P<embedder>\S+), published as (?P<where>\S+) in (?P<seconds>[\d.]+) s"
)


def working_tree_copy(dest: Path) -> Path:
    """``git clone`` of this checkout, then its working tree (tracked and untracked, not ignored
    files, as they are now) over it, deleted files deleted."""
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(dest)], check=True, timeout=300)
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True, timeout=120,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source, target = REPO / name, dest / name
        if source.is_symlink() or source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.unlink(missing_ok=True)
            shutil.copy2(source, target, follow_symlinks=False)  # mtimes kept: make sees no change
        elif not source.exists():
            target.unlink(missing_ok=True)
    return dest


def defaults_env() -> dict[str, str]:
    """This environment without any of the service's settings: every path at its default."""
    drop = set(environment_variables()) | {"MAKEFLAGS", "MAKELEVEL", "MFLAGS"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "PYTHONUNBUFFERED": "1", "TF_CPP_MIN_LOG_LEVEL": "2", "INFERENCE_WORKERS": "2"}


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to make and the server it started (their own process group), then wait."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def query_photo(path: Path) -> bytes:
    """A Leeds photo as a query that is not one of the indexed vectors: mirrored and cropped."""
    with Image.open(path) as image:
        rgb = ImageOps.mirror(image.convert("RGB"))
        w, h = rgb.size
        out = BytesIO()
        rgb.crop((w // 12, h // 12, w - w // 12, h - h // 12)).save(out, "JPEG", quality=90)
    return out.getvalue()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory, artifacts: Path):
    for tool in ("git", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed: the first-run test runs the real `make serve`")
    if porcelain(REPO) is None:
        pytest.skip(f"{REPO} is not a git work tree: nothing to clone")
    if not (SHARED / "datasets" / "leedsbutterfly" / "images").is_dir():
        pytest.skip(f"{SHARED}/datasets/leedsbutterfly not found: no photos for the default index")
    checkout = working_tree_copy(tmp_path_factory.mktemp("first-run") / "species-id")
    before = porcelain(checkout)
    assert before is not None
    port = free_port()
    log_path = artifacts / "first-run-make-serve.log"
    command = [
        "make", "-C", str(checkout), "serve", f"VENV={VENV}", f"SHARED={SHARED}",
        "HOST=127.0.0.1", f"PORT={port}", "-o", f"{VENV}/bin/.installed",
    ]  # fmt: skip
    started = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            command, cwd=checkout, env=defaults_env(), stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        ready = None
        while time.monotonic() - started < 600:
            exited = proc.poll()
            assert exited is None, f"make serve exited {exited}:\n{log_path.read_text()[-5000:]}"
            try:
                ready = httpx.get(f"{base}/health/ready", timeout=5)
                if ready.status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        assert ready is not None and ready.status_code == 200, log_path.read_text()[-5000:]
        seconds_to_ready = time.monotonic() - started
        answers = []
        by_species: dict[str, Path] = {}
        for image, name in leeds(SHARED):
            by_species.setdefault(name, image)
        for name, image in sorted(by_species.items()):
            response = httpx.post(
                f"{base}/img_url", files={"image": (image.name, query_photo(image))}, timeout=60
            )
            answers.append((name, response))
        after_ready = httpx.get(f"{base}/health/ready", timeout=10).json()
    finally:
        stop(proc)
    return {
        "log": log_path.read_text(errors="replace"),
        "ready": ready.json(),
        "after_ready": after_ready,
        "answers": answers,
        "seconds_to_ready": seconds_to_ready,
        "checkout": checkout,
        "before": before,
        "after": porcelain(checkout),
    }


def test_first_make_serve_builds_the_default_index_and_img_url_answers(first_run):
    log = first_run["log"]
    built = BUILT.search(log)
    assert built, log[-5000:]
    assert (built["photos"], built["species"], built["embedder"]) == ("300", "10", "aiy_insects_features")
    assert built["where"].startswith("volumes/index/v-"), built[0]  # INDEX_DIR's default, in the copy
    assert (first_run["checkout"] / "volumes" / "index" / "current").is_symlink()
    assert "Downloading" not in log and "download failed" not in log, log[-5000:]
    assert first_run["ready"]["index"] == "ready" and first_run["ready"]["index_note"] is None

    correct = 0
    for name, response in first_run["answers"]:
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["index"]["embedder"] == "aiy_insects_features" and body["index"]["n_species"] == 10
        assert body["results"], body
        top = body["results"][0]["scientific_name"]
        correct += LEEDS_SYNONYMS.get(top, top) == name  # the index keeps Leeds' own names
    assert correct >= 9, [(n, r.json()["results"][0]["scientific_name"]) for n, r in first_run["answers"]]
    figure(
        f"first `make serve` (fresh copy of the checkout): default index of {built['photos']} Leeds photos, "
        f"{built['species']} species built in {float(built['seconds']):.1f} s; ready "
        f"{first_run['seconds_to_ready']:.0f} s after `make serve` started (models installed, index "
        f"built, models loaded); /img_url top-1 {correct}/{len(first_run['answers'])} on mirrored crops"
    )


def test_first_make_serve_leaves_git_status_as_it_was(first_run):
    assert first_run["after"] is not None
    new = new_entries(first_run["before"], first_run["after"])
    assert not new, "`make serve` wrote files git does not ignore:\n" + "\n".join(new)
