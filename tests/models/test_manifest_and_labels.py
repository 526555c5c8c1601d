from __future__ import annotations

import pytest

from app.models.labels import load_labels
from app.models.manifest import ManifestError, load_manifest
from tests.support.manifests import write_manifest

BASE = {"task": "classifier", "format": "tflite", "labels": "l.csv", "file": "m.tflite"}


def test_the_tracked_manifest_is_valid():
    from tests.support.server import REPO

    manifest = load_manifest(REPO / "volumes" / "models" / "models.toml")
    names = {m.name: m for m in manifest.models}
    assert {"aiy_birds_v1", "aiy_insects_v1", "aiy_plants_v1", "inat_inception_v3"} <= set(names)
    assert {names[n].group for n in ("aiy_birds_v1", "aiy_insects_v1", "aiy_plants_v1")} == {
        "bird",
        "insect",
        "plant",
    }
    assert names["aiy_birds_v1"].background_index == 964


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({**BASE, "name": "a", "labels": None}, "labels"),
        ({**BASE, "name": "a", "handle": "x"}, "exactly one"),
        ({**BASE, "name": "Bad Name"}, "name"),
        ({**BASE, "name": "a", "input": {"size": [224, 224], "dtype": "uint8", "range": [0, 1]}}, "range"),
        ({**BASE, "name": "a", "sha256": "abc"}, "sha256"),
        ({**BASE, "name": "a", "wat": 1}, "wat"),
    ],
)
def test_bad_entries_are_refused_with_the_reason(tmp_path, entry, problem):
    entry = {k: v for k, v in entry.items() if v is not None}
    with pytest.raises(ManifestError, match=problem):
        load_manifest(write_manifest(tmp_path / "m.toml", [entry]))


def test_duplicate_groups_are_refused(tmp_path):
    entries = [{**BASE, "name": "a", "group": "bird"}, {**BASE, "name": "b", "group": "bird"}]
    with pytest.raises(ManifestError, match="group"):
        load_manifest(write_manifest(tmp_path / "m.toml", entries))


def test_labels_join_common_names_by_index(tmp_path):
    (tmp_path / "l.csv").write_text("id,name\n1,Ara macao\n0,Poecile atricapillus\n2,background\n")
    (tmp_path / "c.txt").write_text(
        "Poecile atricapillus (Black-capped Chickadee)\nAra macao (Scarlet Macaw)\nbackground\n"
    )
    labels = load_labels(tmp_path / "l.csv", tmp_path / "c.txt")
    assert [(x.scientific_name, x.common_name) for x in labels] == [
        ("Poecile atricapillus", "Black-capped Chickadee"),
        ("Ara macao", "Scarlet Macaw"),
        ("background", None),
    ]
    (tmp_path / "short.txt").write_text("x (y)\n")
    with pytest.raises(ValueError, match="lines"):
        load_labels(tmp_path / "l.csv", tmp_path / "short.txt")
