"""`python -m app link-gbif` against the local fake GBIF: a label map resolved into the taxonomy
file the service joins onto results, resumable, listing what GBIF cannot match or failed on.
(tests/api/test_gbif_taxonomy.py runs it on the real insects label map and serves the result.)"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli.runner import ok, refused, run_cli
from tests.fakes.gbif import FakeGbif
from tests.support.env import gbif_env
from tests.support.manifests import write_manifest

NAMES = ["Danaus plexippus", "Vanessa atalanta", "Papilio glaucus", "Vanessa cardui", "Nonsense name here"]
FAILING = "Vanessa cardui"  # GBIF answers 500 for it on the first run
UNMATCHED = "Nonsense name here"  # GBIF has no match (NONE): listed, never guessed


@pytest.fixture(scope="module")
def gbif() -> Iterator[FakeGbif]:
    with FakeGbif() as server:
        yield server


@pytest.fixture
def labelled_model(tmp_path) -> Path:
    """A classifier entry with a label map (and background) whose weights are absent: link-gbif
    reads only the manifest and the labels."""
    rows = [*NAMES, "background"]
    (tmp_path / "labelmap.csv").write_text("id,name\n" + "".join(f"{i},{n}\n" for i, n in enumerate(rows)))
    entry = {
        "name": "five_v1",
        "task": "classifier",
        "format": "tflite",
        "file": "absent.tflite",
        "labels": "labelmap.csv",
        "background_index": len(NAMES),
    }
    return write_manifest(tmp_path / "models.toml", [entry])


def link(manifest: Path, gbif: FakeGbif, cache: Path, *args: str | Path):
    env = gbif_env(manifest, gbif, cache)
    return run_cli("link-gbif", *args, "--rate 500 --no-progress", manifest=None, env=env)


def test_link_writes_the_taxonomy_and_a_rerun_resumes(labelled_model, gbif, tmp_path):
    out = tmp_path / "taxa.jsonl"
    gbif.fail_names = {FAILING}
    gbif.hits.clear()
    first = link(labelled_model, gbif, tmp_path / "first.sqlite", "--model five_v1 --out", out)
    assert first.returncode == 1, first.stdout + first.stderr  # a failure: rerun to retry
    assert f"failed: {FAILING}: GBIF answered HTTP 500" in first.stdout
    assert f"unresolved: {UNMATCHED}: NONE" in first.stdout
    assert f"{out}: 3 of 5 names linked, 1 unresolved, 1 failed (rerun to retry); 0 resumed" in first.stdout
    assert set(gbif.hits) == set(NAMES) and "background" not in gbif.hits
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) == 4 and FAILING not in out.read_text()  # the failed name is not written

    # Rerun, GBIF healthy again, with an empty GBIF cache: only the failed name is asked again.
    gbif.fail_names = set()
    before = Counter(gbif.hits)
    second = link(labelled_model, gbif, tmp_path / "second.sqlite", "--model five_v1 --out", out)
    assert second.returncode == 0, second.stdout + second.stderr
    assert gbif.hits - before == Counter({FAILING: 1})
    assert f"{out}: 4 of 5 names linked, 1 unresolved, 0 failed (rerun to retry); 4 resumed" in second.stdout
    assert f"unresolved: {UNMATCHED}: NONE" in second.stdout and "failed:" not in second.stdout
    text = out.read_text()
    assert len(text.splitlines()) == 5 and FAILING in text
    assert 'taxonomy = "taxa.jsonl"' in second.stdout  # how to serve it: the manifest line to add


def test_the_default_file_sits_beside_the_labels(labelled_model, gbif, tmp_path):
    gbif.fail_names = set()
    result = ok(link(labelled_model, gbif, tmp_path / "gbif.sqlite", "--model five_v1"))
    written = [p for p in tmp_path.iterdir() if p.suffix == ".jsonl"]
    assert len(written) == 1, list(tmp_path.iterdir())
    assert result.stdout.splitlines()[-2].startswith(f"{written[0]}: 4 of 5 names linked"), result.stdout
    assert f'add  taxonomy = "{written[0].name}"  to the five_v1 entry' in result.stdout


def test_exactly_one_of_model_or_index(labelled_model, gbif, tmp_path):
    cache = tmp_path / "gbif.sqlite"
    gbif.hits.clear()
    both = refused(link(labelled_model, gbif, cache, "--model five_v1 --index", tmp_path))
    assert both == "error: give exactly one of --model or --index"
    assert refused(link(labelled_model, gbif, cache)) == "error: give exactly one of --model or --index"
    unknown = refused(link(labelled_model, gbif, cache, "--model nope_v1"))
    assert unknown == "error: no model with a label map named 'nope_v1'"
    no_index = refused(link(labelled_model, gbif, cache, "--index", tmp_path))
    assert no_index.startswith(f"error: no index in {tmp_path}"), no_index
    assert not gbif.hits  # refused before asking GBIF anything
