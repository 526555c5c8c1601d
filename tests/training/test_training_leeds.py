"""The training side on real photos and real models, where a running server is involved: train a
head on the real insects embedder and have the running server serve it after a reload, evaluate
the head, and explain (over HTTP) a photo whose butterfly moves. The commands on their own
(evaluate, build-index + evaluate --index, embedding-map, explain, classify FOLDER) are tested in
tests/cli/."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from tests.support.env import service_env
from tests.support.figures import figure
from tests.support.manifests import INSECTS, aiy_entry, insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]

TOKEN = "test-admin-token-head-51c2"
HEAD = "leeds_butterflies"


def cli(*args: str, manifest: Path) -> subprocess.CompletedProcess[str]:
    """``python -m app ... --no-progress``."""
    env = {**os.environ, "MODELS_MANIFEST": str(manifest), "INFERENCE_WORKERS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "app", *args, "--no-progress"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, f"{args}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def leeds_csv(tmp_path_factory) -> Path:
    """The 300 Leeds photos as path,label (names as the iNat 2017 label maps spell them)."""
    path = tmp_path_factory.mktemp("leeds") / "leeds.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows((str(image), name) for image, name in leeds(SHARED))
    return path


@pytest.fixture(scope="module")
def manifest(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("models")
    return write_manifest(folder / "models.toml", [aiy_entry(*INSECTS), insects_features_entry()])


@pytest.fixture(scope="module")
def server(manifest, artifacts) -> Iterator[ServiceProcess]:
    """Started before the head exists: it learns of it through POST /v1/models/reload."""
    env = service_env(manifest, ADMIN_TOKEN=TOKEN)
    proc = ServiceProcess(env, artifacts / "training-service.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="module")
def trained(leeds_csv, manifest, server) -> dict[str, object]:
    result = cli("train-head", str(leeds_csv), "--embedder", "aiy_insects_features", "--name", HEAD,
                 manifest=manifest)  # fmt: skip
    print(result.stdout)
    accuracy = float(re.search(r"validation accuracy ([0-9.]+)", result.stdout)[1])
    figure(f"train-head (logistic on aiy_insects_features), Leeds 240/60: validation accuracy {accuracy:.3f}")
    return {"stdout": result.stdout, "accuracy": accuracy, "dir": manifest.parent / HEAD}


def test_train_head_reaches_09_on_validation(trained):
    assert trained["accuracy"] >= 0.9, trained["stdout"]
    head_dir = trained["dir"]
    meta = json.loads((head_dir / "head.json").read_text())
    assert meta["embedder"]["name"] == "aiy_insects_features" and meta["embedder"]["sha256"]
    assert meta["photos"] == {"train": 240, "validation": 60, "augmented": 0}  # stratified 80/20
    report = json.loads((head_dir / "report" / "report.json").read_text())
    assert report["evaluated"] == 60 and abs(report["top1"] - trained["accuracy"]) < 1e-9
    with np.load(head_dir / "head.npz", allow_pickle=False) as arrays:  # plain arrays, no pickles
        assert arrays["w0"].shape == (1280, 10)


def test_running_server_serves_the_head_after_reload(trained, server, manifest):
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        before = client.post(
            f"/v1/classify/{HEAD}", files={"image": ("x.jpg", b"\xff\xd8\xff", "image/jpeg")}
        )
        assert before.status_code == 404, before.text
        assert client.post("/v1/models/reload").status_code == 401
        reload = client.post("/v1/models/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert reload.status_code == 200, reload.text
        assert reload.json()["reloaded"] == [HEAD]
        state = {m["name"]: m for m in reload.json()["models"]}
        assert state[HEAD]["state"] == "ready" and state[HEAD]["format"] == "head"
        assert state["aiy_insects_v1"]["state"] == "ready"  # untouched, still serving

        # Photos of the validation split: the head never saw them.
        rows = list(csv.DictReader((trained["dir"] / "report" / "predictions.csv").open()))
        held_out = {row["path"] for row in rows}
        truth = dict((str(p), n) for p, n in leeds(SHARED))
        checked = 0
        for path in sorted(held_out)[::6]:
            answer = client.post(
                f"/v1/classify/{HEAD}", files={"image": (Path(path).name, Path(path).read_bytes())}
            )
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["model"] == HEAD
            assert body["results"][0]["scientific_name"] == truth[path], (path, body["results"][:3])
            checked += 1
        assert checked >= 10

        again = client.post("/v1/models/reload", headers={"Authorization": f"Bearer {TOKEN}"})
        assert again.json()["reloaded"] == []  # nothing changed: nothing reloaded


def test_evaluate_the_head(leeds_csv, manifest, trained, tmp_path):
    # On every Leeds photo (80 % of them seen in training: near 1 by construction).
    head = cli(
        "evaluate", str(leeds_csv), "--model", HEAD, "--out", str(tmp_path / "head"), manifest=manifest
    )
    assert json.loads((tmp_path / "head" / "report.json").read_text())["top1"] >= 0.95, head.stdout


def _butterfly_at(corner: str) -> bytes:
    """A Leeds monarch photo, shrunk, on a noisy grey canvas: top-left or bottom-right."""
    butterfly = Image.open(SHARED / "datasets" / "leedsbutterfly" / "images" / "001_0001.jpg").convert("RGB")
    butterfly.thumbnail((200, 200))
    canvas = Image.fromarray(
        np.random.default_rng(0).normal(128, 20, (448, 448, 3)).clip(0, 255).astype(np.uint8)
    )
    canvas.paste(
        butterfly, (20, 20) if corner == "top-left" else (428 - butterfly.width, 428 - butterfly.height)
    )
    buffer = io.BytesIO()
    canvas.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _centroid(grid: list[list[float]]) -> tuple[float, float]:
    values = np.asarray(grid)
    rows, cols = np.mgrid[0 : values.shape[0], 0 : values.shape[1]]
    weights = values / values.sum()
    return float((rows * weights).sum()) / (values.shape[0] - 1), float((cols * weights).sum()) / (
        values.shape[1] - 1
    )


def test_explain_hot_region_follows_the_butterfly(server, artifacts):
    with httpx.Client(base_url=server.base_url, timeout=60) as client:
        centres = {}
        for corner in ("top-left", "bottom-right"):
            photo = _butterfly_at(corner)
            answer = client.post("/v1/explain/aiy_insects_v1", params={"format": "json"},
                                 files={"image": ("b.jpg", photo, "image/jpeg")})  # fmt: skip
            assert answer.status_code == 200, answer.text
            body = answer.json()
            assert body["scientific_name"] == "Danaus plexippus"
            assert len(body["grid"]) == 13 and body["patch"] == 32 and body["image"]["width"] == 448
            centres[corner] = _centroid(body["grid"])
            png = client.post("/v1/explain/aiy_insects_v1", files={"image": ("b.jpg", photo, "image/jpeg")})
            assert png.status_code == 200 and png.headers["content-type"] == "image/png"
            assert png.headers["x-explained-class"] == "Danaus%20plexippus"
            with Image.open(io.BytesIO(png.content)) as overlay:
                assert overlay.size == (448, 448)
            (artifacts / f"explain-{corner}.png").write_bytes(png.content)
        figure(
            "explain, a monarch moved across a canvas: heat centre (row, col as fractions) "
            + ", ".join(f"{corner} ({r:.2f}, {c:.2f})" for corner, (r, c) in centres.items())
        )
        # Row and column of the heat's centre, as fractions of the grid (0 = top/left).
        assert centres["top-left"][0] < 0.45 and centres["top-left"][1] < 0.45
        assert centres["bottom-right"][0] > 0.55 and centres["bottom-right"][1] > 0.55


def test_saliency_maps_are_rationed(server):
    """EXPLAIN_CONCURRENCY (1 here): a second map asked while one is drawn gets 503 at once."""
    from concurrent.futures import ThreadPoolExecutor

    photo = _butterfly_at("top-left")

    def ask(_: int) -> httpx.Response:
        files = {"image": ("b.jpg", photo, "image/jpeg")}
        return httpx.post(f"{server.base_url}/v1/explain/aiy_insects_v1", files=files, timeout=60)

    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(ask, range(3)))
    statuses = sorted(a.status_code for a in answers)
    assert statuses[0] == 200 and 503 in statuses, statuses
    refused = next(a for a in answers if a.status_code == 503)
    assert refused.json()["error"]["code"] == "overloaded" and refused.headers["retry-after"] == "2"
