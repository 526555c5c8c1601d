"""The training side on real photos and real models: evaluate the insects classifier on the Leeds
butterflies, train a head on the real insects embedder and have the running server serve it
after a reload, evaluate the head and a lookup index, draw the embedding map, and explain a
photo whose butterfly moves."""

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

from tests.conftest import (
    HAS_SHARED,
    INSECTS,
    NO_SHARED,
    SHARED,
    aiy_entry,
    figure,
    insects_features_entry,
    service_env,
    write_manifest,
)
from tests.support.reference import leeds
from tests.support.server import REPO, ServiceProcess

pytestmark = [pytest.mark.shared, pytest.mark.skipif(not HAS_SHARED, reason=NO_SHARED)]

TOKEN = "test-admin-token-head-51c2"
HEAD = "leeds_butterflies"


def cli(*args: str, manifest: Path, bar: bool = True) -> subprocess.CompletedProcess[str]:
    """``python -m app ...`` (with --no-progress where the command has a progress bar)."""
    env = {**os.environ, "MODELS_MANIFEST": str(manifest), "INFERENCE_WORKERS": "2"}
    result = subprocess.run(
        [sys.executable, "-m", "app", *args, *(["--no-progress"] if bar else [])],
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


def test_evaluate_the_insects_classifier(leeds_csv, manifest, tmp_path):
    out = tmp_path / "report"
    result = cli(
        "evaluate", str(leeds_csv), "--model", "aiy_insects_v1", "--out", str(out), manifest=manifest
    )
    print(result.stdout)
    figures = re.search(r"top-1 ([0-9.]+), top-5 ([0-9.]+), macro-F1 ([0-9.]+)", result.stdout)
    assert figures, result.stdout
    figure(f"evaluate aiy_insects_v1 on Leeds (300): {figures[0]}")
    report = json.loads((out / "report.json").read_text())
    assert report["evaluated"] == 300 and report["failed"] == 0
    assert report["top1"] == pytest.approx(float(figures[1]), abs=1e-3) and report["top1"] >= 0.9
    assert report["top5"] >= report["top1"]
    assert {c["name"] for c in report["classes"]} == {name for _, name in leeds(SHARED)}
    assert all(c["support"] == 30 and c["in_model"] for c in report["classes"])
    assert sum(map(sum, report["confusion"])) == 300
    with Image.open(out / "confusion.png") as png:
        assert png.format == "PNG" and png.width > 400 and png.height > 400
    page = (out / "mistakes.html").read_text()
    wrong = round(300 * (1 - report["top1"]))
    assert page.count("<figure>") == min(wrong, 24) and ("data:image/jpeg;base64," in page or wrong == 0)
    assert (out / "predictions.csv").read_text().count("\n") == 1 + 300 * 5


def test_evaluate_the_head_and_an_index(leeds_csv, manifest, trained, tmp_path):
    # The head, on every Leeds photo (80 % of them seen in training: near 1 by construction).
    head = cli(
        "evaluate", str(leeds_csv), "--model", HEAD, "--out", str(tmp_path / "head"), manifest=manifest
    )
    assert json.loads((tmp_path / "head" / "report.json").read_text())["top1"] >= 0.95, head.stdout
    # An index of the odd photos, evaluated on the even ones.
    rows = list(csv.DictReader(leeds_csv.open()))
    for part, keep in (("odd", 1), ("even", 0)):
        with (tmp_path / f"{part}.csv").open("w", newline="") as fh:
            writer = csv.DictWriter(fh, ["path", "label"])
            writer.writeheader()
            writer.writerows(r for i, r in enumerate(rows) if i % 2 == keep)
    cli("build-index", str(tmp_path / "odd.csv"), "--out", str(tmp_path / "index"),
        "--embedder", "aiy_insects_features", manifest=manifest)  # fmt: skip
    lookup = cli("evaluate", str(tmp_path / "even.csv"), "--index", str(tmp_path / "index"),
                 "--out", str(tmp_path / "lookup"), manifest=manifest)  # fmt: skip
    print(lookup.stdout)
    report = json.loads((tmp_path / "lookup" / "report.json").read_text())
    figure(f"evaluate --index (150 odd Leeds photos indexed, 150 even looked up): top-1 {report['top1']:.3f}")
    assert report["source"].startswith("index ") and report["evaluated"] == 150
    assert report["top1"] >= 0.9


def test_embedding_map(leeds_csv, manifest, tmp_path):
    out = tmp_path / "map.png"
    result = cli("embedding-map", str(leeds_csv), "--embedder", "aiy_insects_features", "--out", str(out),
                 manifest=manifest)  # fmt: skip
    print(result.stdout)
    purity = float(re.search(r"purity ([0-9.]+)", result.stdout)[1])
    figure(f"embedding-map (aiy_insects_features, Leeds 300): k-means purity {purity:.3f}")
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["purity"] == pytest.approx(purity, abs=1e-3) and 0.1 <= purity <= 1.0
    assert figures["photos"] == 300 and figures["species"] == 10 and figures["nmi"] > 0.5
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 800


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


def test_explain_cli_writes_the_overlay(manifest, tmp_path):
    photo = SHARED / "datasets" / "leedsbutterfly" / "images" / "009_0003.jpg"
    out = tmp_path / "explain.png"
    result = cli(
        "explain", str(photo), "--model", "aiy_insects_v1", "--out", str(out), manifest=manifest, bar=False
    )
    assert "Vanessa atalanta" in result.stdout
    with Image.open(out) as png, Image.open(photo) as original:
        # At most 640 px on the long side, the photo's own proportions (672x448 here).
        assert png.format == "PNG" and png.width == 640
        assert abs(png.height / png.width - original.height / original.width) < 0.01


def test_classify_a_folder_to_csv(manifest, tmp_path):
    """Every photo of a folder (recursive), batched; an unreadable file is listed, not fatal."""
    photos = tmp_path / "photos" / "sub"
    photos.mkdir(parents=True)
    chosen = [(image, name) for image, name in leeds(SHARED)][::50]  # 6 photos, 6 species
    for image, _ in chosen:
        (photos / image.name).symlink_to(image)
    (photos / "notes.jpg").write_text("field notes, not a photo")
    out = tmp_path / "results.csv"
    result = cli("classify", str(tmp_path / "photos"), "--model", "aiy_insects_v1", "--top-k", "3",
                 "--out", str(out), manifest=manifest)  # fmt: skip
    assert "6 photos classified, 1 unreadable" in result.stderr
    assert "unreadable:" in result.stderr and "notes.jpg" in result.stderr
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 6 * 3 + 1
    firsts = {Path(r["path"]).name: r["scientific_name"] for r in rows if r["rank"] == "1"}
    assert sum(firsts[image.name] == name for image, name in chosen) >= 5
    assert next(r for r in rows if r["path"].endswith("notes.jpg"))["error"].startswith(
        "the data is not an image"
    )
