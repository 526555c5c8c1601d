"""services.gbif_link: what link-gbif resolves (a model's label map, an index's species), where it
writes, and the run against the local fake GBIF; plus the GBIF client's concurrency bound under
hundreds of queued names (runs without ../shared)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import faiss
import numpy as np
import pytest

from app.core import InputSpec, Label
from app.enrich.gbif import open_gbif
from app.enrich.taxonomy import load_taxonomy, read_linked
from app.errors import BadRequest
from app.index.artifacts import (
    EmbedderIdentity,
    IndexDir,
    IndexLoadError,
    IndexManifest,
    SpeciesIndex,
    new_version_name,
)
from app.models.manifest import load_manifest, load_manifests
from app.services.gbif_link import LinkTarget, index_target, link, model_target
from app.settings import GbifSettings, ModelSettings
from tests.fakes.gbif import FakeGbif, synthesized
from tests.support.manifests import write_manifest

NAMES = ["Vanessa cardui", "Vanessa atalanta", "Danaus plexippus", "Papilio machaon", "Pieris rapae"]


@pytest.fixture(scope="module")
def server() -> Iterator[FakeGbif]:
    with FakeGbif() as fake:  # this module's own: the tests steer and count it
        yield fake


@pytest.fixture
def fake(server: FakeGbif) -> FakeGbif:
    server.hits.clear()
    server.fail_names, server.none_names = set(), set()
    server.delay, server.max_in_flight = 0.0, 0
    return server


@pytest.fixture
def manifest(tmp_path) -> Path:
    """Label maps only (link-gbif loads no weights): a model without `taxonomy`, one with, an
    embedder."""
    (tmp_path / "labels").mkdir()
    (tmp_path / "labels" / "labelmap.csv").write_text(
        "id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate([*NAMES, "background"]))
    )
    (tmp_path / "labels" / "plain.txt").write_text("Vanessa cardui\nbackground\nDanaus plexippus\n")
    base = {"task": "classifier", "format": "tflite", "file": "absent.tflite"}
    return write_manifest(
        tmp_path / "models.toml",
        [
            {**base, "name": "untaxed_v1", "labels": "labels/labelmap.csv", "background_index": 5},
            {
                **base,
                "name": "taxed_v1",
                "labels": "labels/plain.txt",
                "background_index": 1,
                "taxonomy": "taxa/taxed.jsonl",
            },
            {**base, "name": "nobackground_v1", "labels": "labels/plain.txt"},
            {
                "name": "embedder_v1",
                "task": "embedder",
                "format": "tflite",
                "file": "e.tflite",
                "output": "features",
            },
        ],
    )


def gbif_settings(fake: FakeGbif, tmp_path: Path, **overrides: object) -> GbifSettings:
    return GbifSettings(api_url=fake.base_url, cache_path=tmp_path / "gbif.sqlite", backoff=0.01, **overrides)


def test_model_target_lists_the_labels_but_the_background_and_hints_the_manifest_line(manifest, tmp_path):
    target = model_target(ModelSettings(manifest=manifest), "untaxed_v1")
    assert target.names == NAMES  # "background" (index 5) is not a species to link
    assert target.out == tmp_path / "labels" / "gbif_taxonomy.jsonl"  # beside the label map
    assert target.manifest_hint is not None
    assert 'taxonomy = "labels/gbif_taxonomy.jsonl"' in target.manifest_hint  # relative to the manifest
    assert "untaxed_v1" in target.manifest_hint

    chosen = tmp_path / "elsewhere" / "t.jsonl"
    assert model_target(ModelSettings(manifest=manifest), "untaxed_v1", chosen).out == chosen

    taxed = model_target(ModelSettings(manifest=manifest), "taxed_v1")
    assert taxed.names == ["Vanessa cardui", "Danaus plexippus"]
    assert taxed.out == tmp_path / "taxa" / "taxed.jsonl" and taxed.manifest_hint is None
    plain = model_target(ModelSettings(manifest=manifest), "nobackground_v1")
    assert plain.names == ["Vanessa cardui", "background", "Danaus plexippus"]  # no background declared


@pytest.mark.parametrize("name", ["nope_v1", "embedder_v1"])
def test_model_target_refuses_a_model_without_a_label_map(manifest, name):
    with pytest.raises(BadRequest, match=f"no model with a label map named '{name}'"):
        model_target(ModelSettings(manifest=manifest), name)


def test_index_target_lists_the_index_species(tmp_path):
    labels = [
        Label(scientific_name="Vanessa cardui", common_name="Painted Lady"),
        Label(scientific_name="Danaus plexippus"),
    ]
    vectors = np.eye(3, 4, dtype=np.float32)
    flat = faiss.IndexFlatIP(4)
    flat.add(vectors)
    identity = EmbedderIdentity(name="e", sha256=None, output_key=None, input=InputSpec(), output_dim=4)
    manifest = IndexManifest(
        version=new_version_name(),
        created_at=datetime.now(UTC),
        embedder=identity,
        pca_dims=None,
        dim=4,
        index_type="flat",
        n_vectors=3,
        n_species=2,
    )
    root = tmp_path / "index"
    IndexDir(root).publish(SpeciesIndex(manifest, flat, None, labels, np.array([0, 1, 0], np.int32)))

    target = index_target(root)
    assert target.names == ["Vanessa cardui", "Danaus plexippus"]
    assert target.out == root / "gbif_taxonomy.jsonl" and target.manifest_hint is None
    assert index_target(root, tmp_path / "x.jsonl").out == tmp_path / "x.jsonl"
    with pytest.raises(IndexLoadError):
        index_target(tmp_path / "no-index")


def test_link_writes_one_line_per_name_and_resumes(manifest, fake, tmp_path):
    fake.none_names = {"Pieris rapae"}
    fake.fail_names = {"Papilio machaon"}
    target = model_target(ModelSettings(manifest=manifest), "untaxed_v1")
    settings = gbif_settings(fake, tmp_path, retries=1)

    first = asyncio.run(link(target, settings, rate=1000, kingdom=None, progress=False))
    assert first.linked == 3 and first.resumed == 0
    assert [item.name for item in first.unresolved] == ["Pieris rapae"]
    assert [name for name, _ in first.failed] == ["Papilio machaon"]
    assert "HTTP 500" in first.failed[0][1] and fake.hits["Papilio machaon"] == 2  # retried once
    written = read_linked(target.out)
    assert sorted(item.name for item in written) == sorted(set(NAMES) - {"Papilio machaon"})

    fake.fail_names = set()
    hits = sum(fake.hits.values())
    second = asyncio.run(link(target, settings, rate=1000, kingdom=None, progress=False))
    assert second.resumed == 4 and second.linked == 4 and second.failed == []
    assert sum(fake.hits.values()) == hits + 1  # only the failed name was asked again
    lines = target.out.read_text().splitlines()
    assert len(lines) == 5 and sorted(json.loads(line)["name"] for line in lines) == sorted(NAMES)

    taxa = load_taxonomy(target.out)
    assert set(taxa) == set(NAMES) - {"Pieris rapae"}  # NONE is written, but links nothing
    cardui = taxa["Vanessa cardui"]
    assert cardui.usageKey == synthesized("Vanessa cardui")["usageKey"]
    assert (cardui.genus, cardui.family, cardui.order, cardui.class_) == (
        "Vanessa",
        "Nymphalidae",
        "Lepidoptera",
        "Insecta",
    )


def test_link_creates_the_folder_it_writes_to(fake, tmp_path):
    target = LinkTarget(["Danaus plexippus"], tmp_path / "deep" / "er" / "taxa.jsonl")
    report = asyncio.run(
        link(target, gbif_settings(fake, tmp_path), rate=1000, kingdom="Animalia", progress=False)
    )
    assert report.linked == 1 and len(target.out.read_text().splitlines()) == 1


def test_hundreds_of_queued_lookups_wait_for_a_slot_without_timing_out(fake, tmp_path):
    """Regression: GbifClient._get holds one concurrency slot per lookup and starts its deadline
    when it gets the slot. Before, the deadline also ran while a name waited behind the
    semaphore, so names queued behind 2 slots timed out (about 90 of these 200 did)."""
    fake.delay = 0.01
    settings = gbif_settings(fake, tmp_path, max_concurrency=2, total_timeout=1.0)
    names = [f"Papilio species{i}" for i in range(200)]

    async def burst() -> tuple[list[object], float]:
        async with open_gbif(settings) as client:
            started = time.monotonic()
            answers = await asyncio.gather(*(client.match(n) for n in names), return_exceptions=True)
            return answers, time.monotonic() - started

    answers, elapsed = asyncio.run(burst())
    failures = [a for a in answers if isinstance(a, BaseException)]
    assert failures == [], f"{len(failures)} of 200 failed, the first: {failures[0]!r}"
    assert elapsed > 1.2 * settings.total_timeout, elapsed  # the queue outlasted one lookup's deadline
    assert [a.payload["canonicalName"] for a in answers] == names  # type: ignore[union-attr]
    assert {a.cache for a in answers} == {"miss"}  # type: ignore[union-attr]
    assert fake.max_in_flight == 2  # never more than GBIF_MAX_CONCURRENCY at GBIF
    assert all(fake.hits[n] == 1 for n in names)  # no retries were needed


def test_the_hint_for_a_relative_out_names_the_file_link_writes(manifest, tmp_path, monkeypatch):
    cwd = tmp_path / "elsewhere"
    cwd.mkdir()
    monkeypatch.chdir(cwd)  # link-gbif run from another folder than the manifest's
    target = model_target(ModelSettings(manifest=manifest), "untaxed_v1", Path("out") / "taxa.jsonl")
    assert target.manifest_hint is not None
    hinted = target.manifest_hint.split('taxonomy = "', 1)[1].split('"', 1)[0]
    assert load_manifest(manifest).resolve(hinted).resolve() == target.out.resolve()


def test_link_declares_the_taxonomy_of_a_user_model_in_the_user_manifest(manifest, fake, tmp_path):
    """A model of the user's (local.toml, e.g. a trained head) gets its `taxonomy` line written
    there once the file exists; the shipped manifest is never edited."""
    shipped = manifest.read_text()
    user = manifest.with_name("local.toml")
    user.write_text(
        "# mine\n[[models]]\n"
        'name = "mine_v1"\ntask = "classifier"\nformat = "head"\nembedder = "embedder_v1"\n'
        'file = "mine/head.npz"\nlabels = "labels/plain.txt"\noutput = "logits"\n\n'
        '[[models]]\nname = "other_v1"\ntask = "classifier"\nformat = "tflite"\nfile = "o.tflite"\n'
        'labels = "labels/plain.txt"\n'
    )
    settings = ModelSettings(manifest=manifest)
    target = model_target(settings, "mine_v1")
    assert target.manifest_hint is None and target.declare == (user, "mine_v1", "labels/gbif_taxonomy.jsonl")

    report = asyncio.run(link(target, gbif_settings(fake, tmp_path), rate=1000, kingdom=None, progress=False))
    assert report.linked == 2
    merged = load_manifests(manifest, user)
    mine = next(m for m in merged.models if m.name == "mine_v1")
    assert merged.resolve(mine.taxonomy or "", mine) == target.out
    assert next(m for m in merged.models if m.name == "other_v1").taxonomy is None  # only its own table
    assert manifest.read_text() == shipped and user.read_text().startswith("# mine\n")
    assert model_target(settings, "mine_v1").declare is None  # declared now: nothing more to do
