"""`train-head` and `embedding-map` on the real insects embedder and Leeds photos: a head trained,
saved and registered, then listed by `models` and used by `classify`; the embedding map's figures.
(tests/training/test_training_leeds.py trains on all 300 photos and has a running server serve
the head after a reload.)"""

from __future__ import annotations

import csv
import json
import re
import tomllib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.cli.runner import first_of_each, ok, refused, run_cli, species_folders
from tests.support.figures import figure
from tests.support.manifests import INSECTS, aiy_entry, insects_features_entry, write_manifest

EMBEDDER = "aiy_insects_features"
HEAD = "four_butterflies"


@pytest.fixture(scope="module")
def photos(tmp_path_factory, leeds_photos) -> dict[str, Any]:
    """train: 8 photos each of 4 species; held: the 21st photo of each (never trained on)."""
    root = tmp_path_factory.mktemp("train-photos")
    chosen = first_of_each(leeds_photos, species=4, per_species=8)
    species = sorted({name for _, name in chosen})
    held = [[(p, n) for p, n in leeds_photos if n == name][20] for name in species]
    (root / "held").mkdir()
    for image, _ in held:
        (root / "held" / image.name).symlink_to(image)
    return {"train": species_folders(root / "train", chosen), "held": root / "held", "truth": dict(held)}


def train_head(dataset: Path, name: str, *options: str | Path, manifest: Path):
    required = f"--embedder {EMBEDDER} --name {name} --no-progress"
    return run_cli("train-head", dataset, required, *options, manifest=manifest)


@pytest.fixture(scope="module")
def trained(photos, tmp_path_factory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("train-models")
    manifest = write_manifest(folder / "models.toml", [aiy_entry(*INSECTS), insects_features_entry()])
    result = ok(train_head(photos["train"], HEAD, "--kind dense --augment flip", manifest=manifest))
    return {"manifest": manifest, "stdout": result.stdout, "dir": folder / HEAD}


@pytest.mark.shared
def test_train_head_saves_the_head_and_adds_it_to_the_user_manifest(trained, photos):
    stdout, head_dir, manifest = trained["stdout"], trained["dir"], trained["manifest"]
    user = manifest.with_name("local.toml")
    assert (
        f"{HEAD}: dense head on {EMBEDDER}, 4 classes, 24 training photos (+24 augmented), "
        "8 validation photos" in stdout
    ), stdout
    found = re.search(r"validation accuracy ([0-9.]+)", stdout)
    assert found, stdout
    accuracy = float(found[1])
    assert accuracy >= 0.75, stdout
    assert f"report in {head_dir / 'report'}" in stdout
    assert f"added to {user}; serve it at /v1/classify/{HEAD}" in stdout

    meta = json.loads((head_dir / "head.json").read_text())
    assert meta["kind"] == "dense" and meta["classes"] == 4 and meta["augment"] == ["flip"]
    assert meta["photos"] == {"train": 24, "validation": 8, "augmented": 24}
    assert meta["embedder"]["name"] == EMBEDDER and len(meta["embedder"]["sha256"]) == 64
    with np.load(head_dir / "head.npz", allow_pickle=False) as arrays:  # plain arrays, no pickles
        assert arrays["w0"].shape[0] == 1280
    labels = list(csv.DictReader((head_dir / "labels.csv").open()))
    assert [row["name"] for row in labels] == sorted(photos["truth"].values())
    report = json.loads((head_dir / "report" / "report.json").read_text())
    assert report["evaluated"] == 8 and report["top1"] == pytest.approx(accuracy, abs=1e-3)

    # The shipped manifest is left as it was: the head is the user's, in local.toml beside it.
    shipped = [m["name"] for m in tomllib.loads(manifest.read_text())["models"]]
    assert shipped == ["aiy_insects_v1", EMBEDDER]
    entries = {m["name"]: m for m in tomllib.loads(user.read_text())["models"]}
    assert list(entries) == [HEAD]
    entry = entries[HEAD]
    assert entry["format"] == "head" and entry["embedder"] == EMBEDDER and entry["task"] == "classifier"
    assert (user.parent / entry["file"]).resolve() == (head_dir / "head.npz").resolve()


@pytest.mark.shared
def test_the_registered_head_is_ready_and_classifies_held_out_photos(trained, photos):
    manifest = trained["manifest"]
    rows = {row["name"]: row for row in json.loads(ok(run_cli("models", manifest=manifest)).stdout)}
    head = rows[HEAD]
    assert head["state"] == "ready" and head["format"] == "head" and head["embedder"] == EMBEDDER, head
    assert head["manifest"] == str(manifest.with_name("local.toml"))
    assert rows[EMBEDDER]["manifest"] == str(manifest)
    assert head["num_classes"] == 4 and head["endpoint"] == f"/v1/classify/{HEAD}"

    options = f"--model {HEAD} --top-k 1 --no-progress"
    result = ok(run_cli("classify", photos["held"], options, manifest=manifest))
    firsts = {Path(r["path"]).name: r["scientific_name"] for r in csv.DictReader(result.stdout.splitlines())}
    truth = {path.name: name for path, name in photos["truth"].items()}
    assert set(firsts) == set(truth)
    assert sum(firsts[name] == truth[name] for name in truth) >= 3, (firsts, truth)


@pytest.mark.shared
def test_no_register_leaves_the_manifest_alone(photos, tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", [insects_features_entry()])
    before = manifest.read_text()
    out = tmp_path / "elsewhere"
    result = ok(train_head(photos["train"], "unlisted", "--no-register --out-dir", out, manifest=manifest))
    assert "unlisted: logistic head on" in result.stdout, result.stdout
    assert f"saved {out / 'head.npz'}; not registered (--no-register)" in result.stdout, result.stdout
    assert (out / "head.json").is_file() and not (tmp_path / "unlisted").exists()
    assert manifest.read_text() == before and not manifest.with_name("local.toml").exists()


@pytest.mark.shared
def test_train_head_refusals(photos, tmp_path):
    manifest = write_manifest(tmp_path / "models.toml", [aiy_entry(*INSECTS), insects_features_entry()])
    train = photos["train"]
    kind = refused(train_head(train, "x", "--kind forest", manifest=manifest))
    assert kind == "error: --kind is logistic or dense"
    augment = refused(train_head(train, "x", "--augment rotate", manifest=manifest))
    assert augment == "error: unknown augmentation ['rotate']: choose from ['crop', 'flip']"
    classifier = run_cli("train-head", train, "--embedder aiy_insects_v1 --name x", manifest=manifest)
    assert refused(classifier) == "error: no embedder named 'aiy_insects_v1'"
    assert not (tmp_path / "x").exists()


@pytest.mark.shared
def test_a_taken_name_is_refused_before_the_registered_head_is_overwritten(trained, photos):
    head = trained["dir"] / "head.npz"
    before = head.read_bytes()
    result = train_head(photos["train"], HEAD, manifest=trained["manifest"])
    assert "already has a model named" in refused(result)
    assert head.read_bytes() == before


@pytest.mark.parametrize("command", ["train-head", "embedding-map"])
def test_training_commands_name_the_training_extra_when_it_is_missing(
    command, tmp_path, without_training_extra
):
    manifest = write_manifest(tmp_path / "models.toml", [])
    photos = tmp_path / "photos"
    (photos / "Danaus_plexippus").mkdir(parents=True)
    options = ("--name x",) if command == "train-head" else ("--out", tmp_path / "map.png")
    blocked = without_training_extra
    result = run_cli(command, photos, f"--embedder {EMBEDDER}", *options, manifest=manifest, env=blocked)
    expected = f"error: {command} needs the 'training' extra: pip install 'species-id[training]'"
    assert refused(result) == expected


@pytest.mark.shared
def test_embedding_map(leeds_csv, real_manifest, tmp_path):
    out = tmp_path / "map.png"
    options = f"--embedder {EMBEDDER} --no-progress"
    result = ok(run_cli("embedding-map", leeds_csv, options, "--out", out, manifest=real_manifest))
    print(result.stdout)
    found = re.search(r"purity ([0-9.]+)", result.stdout)
    assert found, result.stdout
    purity = float(found[1])
    figure(f"embedding-map (aiy_insects_features, Leeds 300): k-means purity {purity:.3f}")
    figures = json.loads(out.with_suffix(".json").read_text())
    assert figures["purity"] == pytest.approx(purity, abs=1e-3)
    assert figures["photos"] == 300 and figures["species"] == 10
    assert purity >= 0.9 and figures["nmi"] >= 0.9  # measured 1.000 and 1.000 (k=10, seeded)
    with Image.open(out) as png:
        assert png.format == "PNG" and png.width > 800
