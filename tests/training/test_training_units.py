"""The training side's parts on small data (no ../shared): the head's export and forward pass,
the manifest entry it adds, the split, the metrics, labelled CSVs, and occlusion on a model whose
answer depends on one region of the photo."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from app.index.species_folders import labelled_images
from app.models.backends.base import BackendError
from app.models.backends.head import HeadBackend, HeadWeights, sidecar
from app.models.manifest import ManifestError, add_entry, load_manifest
from app.training.evaluate import OTHER, evaluate, mistakes_html
from app.training.heads import fit, split, train_head
from app.training.predictions import Predictions, Ranked
from tests.support.manifests import write_manifest


def _clusters(n_per: int, classes: int, dim: int = 32, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(classes, dim)) * 3
    x = np.concatenate([centres[c] + rng.normal(size=(n_per, dim)) for c in range(classes)]).astype(
        np.float32
    )
    return x, [f"Species {chr(65 + c)}" for c in range(classes) for _ in range(n_per)]


@pytest.mark.parametrize("kind", ["logistic", "dense"])
@pytest.mark.parametrize("classes", [2, 4])
def test_trained_head_exports_what_sklearn_learned(kind, classes, tmp_path):
    x, labels = _clusters(30, classes)
    trained = train_head(x, labels, kind=kind, seed=1)
    assert trained.val_accuracy >= 0.9 and trained.weights.output_dim == classes  # 2 classes: 2 logits
    assert len(trained.val_rows) == round(0.2 * len(labels))
    trained.weights.save(tmp_path / "head.npz")
    loaded = HeadWeights.load(tmp_path / "head.npz")
    np.testing.assert_allclose(loaded.logits(x), trained.weights.logits(x), rtol=1e-6)
    # The probabilities the report was computed from are the exported weights' own.
    logits = loaded.logits(x[trained.val_rows])
    expected = np.exp(logits - logits.max(1, keepdims=True))
    np.testing.assert_allclose(
        trained.val_probabilities, expected / expected.sum(1, keepdims=True), rtol=1e-5
    )


def test_augmented_copies_of_validation_photos_never_train():
    x, labels = _clusters(10, 3)
    y = np.array([sorted(set(labels)).index(name) for name in labels])
    train_rows, val_rows = split(labels, 0.2, seed=0)  # the split train_head makes (same seed)
    # A training photo's copy is a slightly jittered copy of it; a validation photo's copy is
    # poison: the features of a validation photo of the next species, so that, trained on under
    # this photo's label, it teaches the head to call that other photo by the wrong name.
    copies = x + np.random.default_rng(5).normal(0, 0.1, x.shape).astype(np.float32)
    for c in range(3):
        copies[val_rows[y[val_rows] == c]] = x[val_rows[y[val_rows] == (c + 1) % 3]]
    # The poison bites: a head that also learns from the validation photos' copies gets them wrong.
    leaked_rows = np.concatenate([train_rows, train_rows, val_rows])
    leaked_x = np.concatenate([x[train_rows], copies[train_rows], copies[val_rows]])
    leaked, _ = fit(leaked_x, y[leaked_rows], kind="logistic", hidden=256, seed=0)
    assert (leaked.logits(x[val_rows]).argmax(axis=1) == y[val_rows]).mean() < 0.5

    trained = train_head(x, labels, augmented=[copies])
    assert np.array_equal(trained.val_rows, val_rows) and np.array_equal(trained.train_rows, train_rows)
    assert trained.n_augmented == len(train_rows)  # one copy per training photo, none for validation
    # Validation is answered as on clean training: every validation photo by its own name.
    assert trained.val_accuracy == 1.0
    np.testing.assert_array_equal(trained.val_probabilities.argmax(axis=1), y[val_rows])
    np.testing.assert_array_equal(trained.weights.logits(x[val_rows]).argmax(axis=1), y[val_rows])


def test_split_is_stratified_and_needs_two_photos_per_species():
    labels = ["a"] * 10 + ["b"] * 4 + ["c"] * 2
    train, val = split(labels, 0.25, seed=0)
    assert sorted({labels[i] for i in val}) == ["a", "b", "c"]  # every species on both sides
    assert set(train).isdisjoint(val) and len(train) + len(val) == 16
    with pytest.raises(ValueError, match="fewer than 2"):
        split([*labels, "d"], 0.25, seed=0)


def test_head_backend_refuses_another_embedder(tmp_path):
    x, labels = _clusters(10, 2, dim=8)
    trained = train_head(x, labels)
    trained.weights.save(tmp_path / "head.npz")
    sidecar(tmp_path / "head.npz").write_text(json.dumps({"embedder": {"name": "emb", "sha256": "a" * 64}}))

    def features(batch):
        return np.ones((len(batch), 8), np.float32)

    ok = HeadBackend(tmp_path / "head.npz", embedder_name="emb", embedder_sha256="a" * 64, embedder_dim=8,
                     features=features)  # fmt: skip
    assert ok.predict(np.zeros((3, 4, 4, 3), np.uint8)).shape == (3, 2)
    with pytest.raises(BackendError, match="retrain"):
        HeadBackend(tmp_path / "head.npz", embedder_name="emb", embedder_sha256="b" * 64, embedder_dim=8,
                    features=features)  # fmt: skip
    with pytest.raises(BackendError, match="16"):
        HeadBackend(tmp_path / "head.npz", embedder_name="emb", embedder_sha256=None, embedder_dim=16,
                    features=features)  # fmt: skip
    (tmp_path / "bad.npz").write_bytes(b"not an npz")
    with pytest.raises(BackendError):
        HeadWeights.load(tmp_path / "bad.npz")


EMBEDDER = {"name": "emb", "task": "embedder", "format": "tflite", "file": "e.tflite", "output": "features"}
HEAD = {"name": "mine", "task": "classifier", "format": "head", "embedder": "emb", "file": "mine/head.npz",
        "labels": "mine/labels.csv", "output": "logits"}  # fmt: skip


def test_manifest_heads_need_their_embedder(tmp_path):
    assert load_manifest(write_manifest(tmp_path / "ok.toml", [EMBEDDER, HEAD])).models[1].embedder == "emb"
    with pytest.raises(ManifestError, match="no embedder named"):
        load_manifest(write_manifest(tmp_path / "a.toml", [HEAD]))
    with pytest.raises(ManifestError, match="go together"):
        load_manifest(write_manifest(tmp_path / "b.toml", [EMBEDDER, {**HEAD, "format": "tflite"}]))


def test_add_entry_appends_once_and_keeps_the_file(tmp_path):
    path = write_manifest(tmp_path / "models.toml", [EMBEDDER])
    path.write_text("# my comment\n" + path.read_text())
    assert add_entry(path, {k: str(v) for k, v in HEAD.items()}) is True
    assert add_entry(path, {k: str(v) for k, v in HEAD.items()}) is False  # the same entry: nothing to do
    text = path.read_text()
    assert text.startswith("# my comment\n") and text.count("[[models]]") == 2
    with pytest.raises(ManifestError, match="already has"):
        add_entry(path, {**{k: str(v) for k, v in HEAD.items()}, "labels": "other.csv"})
    with pytest.raises(ManifestError, match="invalid"):
        add_entry(path, {**{k: str(v) for k, v in HEAD.items()}, "name": "x", "embedder": "nope"})
    assert path.read_text() == text  # a refused entry leaves the file as it was


def test_metrics_by_hand():
    truths = ["Aa bb", "Aa bb", "Cc dd", "Cc dd", "Ee ff"]
    ranked = [
        Ranked(["Aa bb", "Cc dd"], [0.9, 0.1]),  # right
        Ranked(
            ["cc  DD", "Aa bb"], [0.6, 0.4]
        ),  # wrong (names match case- and space-insensitively), top-2 right
        Ranked(["Cc dd"], [0.8]),  # right
        None,  # unreadable: not evaluated
        Ranked(["Zz yy", "Aa bb"], [0.7, 0.2]),  # wrong, outside the true classes; Ee ff not in the model
    ]
    paths = [Path(f"p{i}.jpg") for i in range(5)]
    predictions = Predictions("test", ["Aa bb", "Cc dd", "Zz yy"], paths, ranked, [(paths[3], "broken")])
    report = evaluate(predictions, truths, dataset="hand")
    assert (report.images, report.evaluated, report.failed) == (5, 4, 1)
    assert report.top1 == 0.5 and report.top5 == 0.75
    by_name = {c.name: c for c in report.classes}
    # Aa bb: 1 of 2 found, never wrongly said -> P 1, R 0.5; Cc dd: said twice, right once -> P 0.5, R 1.
    assert (by_name["Aa bb"].precision, by_name["Aa bb"].recall, by_name["Aa bb"].support) == (1.0, 0.5, 2)
    assert (by_name["Cc dd"].precision, by_name["Cc dd"].recall, by_name["Cc dd"].support) == (0.5, 1.0, 1)
    assert (by_name["Ee ff"].recall, by_name["Ee ff"].in_model) == (0.0, False)
    assert report.not_in_model == ["Ee ff"]
    assert report.macro_f1 == pytest.approx((2 / 3 + 2 / 3 + 0) / 3)
    assert report.confusion_labels == ["Aa bb", "Cc dd", "Ee ff", OTHER]
    assert report.confusion == [[1, 1, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]]
    assert [m.predicted for m in report.mistakes] == ["Zz yy", "cc  DD"]  # most confident first
    assert report.mistakes[1].truth_rank == 2 and report.mistakes[0].truth_rank is None
    assert "Zz yy" in mistakes_html(report)


def test_labelled_csv(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "list.csv").write_text(
        f"path,label,common_name\na.jpg,Danaus plexippus,Monarch\n{tmp_path}/b.jpg,X y,\n"
    )
    images = labelled_images(tmp_path / "list.csv")
    assert [(i.path, i.scientific_name, i.common_name) for i in images] == [
        (tmp_path / "a.jpg", "Danaus plexippus", "Monarch"),
        (tmp_path / "b.jpg", "X y", None),
    ]
    (tmp_path / "bad.csv").write_text("file,species\na.jpg,X y\n")
    with pytest.raises(ValueError, match="header"):
        labelled_images(tmp_path / "bad.csv")


class _LooksTopLeft:
    """A two-class 'model' whose class-0 probability is the brightness of the top-left quarter:
    hiding that quarter (with mid-grey) is the only thing that lowers it."""

    output_dim = 2

    def predict(self, batch):
        bright = batch[:, :28, :28].astype(np.float32).mean(axis=(1, 2, 3)) / 255.0
        return np.stack([bright, 1 - bright], axis=1).astype(np.float32)

    def close(self):
        pass


def test_occlusion_finds_the_region_the_model_reads():
    from app.explain import occlusion
    from app.models.labels import Label
    from app.models.manifest import ModelSpec
    from app.models.registry import LoadedModel

    spec = ModelSpec(name="toy", task="classifier", format="tflite", file="x", labels="y",
                     input={"size": [56, 56], "dtype": "uint8", "range": [0, 255]})  # fmt: skip
    labels = [Label(scientific_name="A a"), Label(scientific_name="B b")]
    model = LoadedModel(spec, state="ready", backend=_LooksTopLeft(), labels=labels)
    pixels = np.full((56, 56, 3), 255, np.uint8)
    result = occlusion(model, pixels)
    assert result.class_index == 0 and result.score == pytest.approx(1.0)
    assert result.patch == 8 and result.stride == 4 and result.grid.shape == (13, 13)
    assert result.grid[:6, :6].min() > 0 and result.grid[7:, :].max() == 0 and result.grid[:, 7:].max() == 0
    assert result.heat.shape == (56, 56) and result.heat.max() == pytest.approx(1.0)
    # A patch straddling the edge of the quarter also costs something: the heat fades by x = 32.
    assert result.heat[:28, :28].mean() > 0.5
    assert result.heat[32:, :].max() == 0 and result.heat[:, 32:].max() == 0
