"""Shared fixtures: real models from ../shared, a test-built SavedModel, a local image host and
the real service started as a uvicorn subprocess on loopback.

Where ../shared is absent, tests marked ``shared`` are skipped with the reason; the rest run on
the test-built model alone. The helpers the tests import live in ``tests/support/`` (shared,
manifests, env, figures); this file keeps only pytest's hooks and the fixtures.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.fakes.gbif import FakeGbif
from tests.fakes.image_host import ImageHost
from tests.support.env import service_env
from tests.support.figures import FIGURES
from tests.support.git_tree import TREE_AT_START, porcelain
from tests.support.images import encode, photo
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, plants_entry, write_manifest
from tests.support.models import build_classifier_savedmodel
from tests.support.server import REPO, ServiceProcess
from tests.support.shared import HAS_SHARED, MODELS, NO_SHARED, SHARED


def pytest_sessionstart(session: pytest.Session) -> None:
    (REPO / "test-artifacts" / "figures.txt").unlink(missing_ok=True)  # this run's figures only
    # tests/test_clean_tree.py, run last, compares the end of the session with this.
    session.config.stash[TREE_AT_START] = porcelain(REPO)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # The clean-tree check runs after every other test (a stable sort keeps the rest in order).
    items.sort(key=lambda item: item.path.name == "test_clean_tree.py")
    if HAS_SHARED:
        return
    skip = pytest.mark.skip(reason=NO_SHARED)
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    path = REPO / "test-artifacts"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def plant_labels(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path | None]:
    """The real 2102-class plants label map, or a stand-in of the same size without ../shared."""
    if HAS_SHARED:
        folder = MODELS / "aiy_plants_v1"
        return folder / "labelmap.csv", folder / "inat_plant_labels.txt"
    path = tmp_path_factory.mktemp("labels") / "labelmap.csv"
    rows = [f"{i},Species {i}" for i in range(2101)] + ["2101,background"]
    path.write_text("id,name\n" + "\n".join(rows) + "\n")
    return path, None


@pytest.fixture(scope="session")
def plants_savedmodel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_classifier_savedmodel(tmp_path_factory.mktemp("savedmodel") / "plants", num_classes=2102)


@pytest.fixture(scope="session")
def manifest(
    tmp_path_factory: pytest.TempPathFactory, plants_savedmodel: Path, plant_labels: tuple[Path, Path | None]
) -> Path:
    folder = tmp_path_factory.mktemp("manifest")
    (folder / "broken.tflite").write_bytes(b"this is not a flatbuffer" * 100)
    labels = folder / "three.txt"
    labels.write_text("a\nb\nc\n")
    base = {"task": "classifier", "format": "tflite", "labels": str(labels)}
    entries = [aiy_entry(*BIRDS), aiy_entry(*INSECTS)] if HAS_SHARED else []
    entries += [
        plants_entry(plants_savedmodel, plant_labels),
        {"name": "ghost_v1", "file": "ghost/model.tflite", **base},
        {"name": "broken_v1", "file": "broken.tflite", **base},
        {"name": "tampered_v1", "file": "broken.tflite", "sha256": "0" * 64, **base},
    ]
    return write_manifest(folder / "models.toml", entries)


@pytest.fixture(scope="session")
def image_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ImageHost]:
    root = tmp_path_factory.mktemp("www")
    (root / "page.html").write_text("<html><body>not a photo</body></html>")
    (root / "photo.jpg").write_bytes(encode(photo(), "JPEG", quality=90))
    if HAS_SHARED:
        (root / "samples").symlink_to(SHARED / "samples")
        (root / "leeds").symlink_to(SHARED / "datasets" / "leedsbutterfly" / "images")
    with ImageHost(root) as host:
        yield host


@pytest.fixture(scope="session")
def fake_gbif() -> Iterator[FakeGbif]:
    with FakeGbif() as server:
        yield server


@pytest.fixture(scope="session")
def service(manifest: Path, artifacts: Path) -> Iterator[ServiceProcess]:
    proc = ServiceProcess(service_env(manifest), artifacts / "service.log").start()
    yield proc
    proc.stop()


@pytest.fixture(scope="session")
def client(service: ServiceProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=60) as c:
        yield c
