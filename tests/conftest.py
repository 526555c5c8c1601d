"""Shared fixtures: real models from ../shared, a test-built SavedModel, a local image host and
the real service started as a uvicorn subprocess on loopback.

Where ../shared is absent, tests marked ``shared`` are skipped with the reason; the rest run on
the test-built model alone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.gbif import FakeGbif
from tests.fakes.image_host import ImageHost
from tests.support.images import encode, photo
from tests.support.models import build_classifier_savedmodel
from tests.support.server import REPO, ServiceProcess

SHARED = Path(os.environ.get("SPECIES_SHARED_DIR", REPO.parent / "shared")).resolve()
MODELS = SHARED / "models"
HAS_SHARED = (MODELS / "aiy_birds_v1" / "model.tflite").is_file()
NO_SHARED = f"{SHARED} not found: tests on the real models and photos are skipped"

# The limits the test server runs with, small enough to cross cheaply.
MAX_UPLOAD = 4_000_000
MAX_DOWNLOAD = 4_000_000
READ_TIMEOUT = 1.5


FIGURES: list[str] = []


def figure(line: str) -> None:
    """A figure a test measured: printed at the end of the run (and kept in test-artifacts/)."""
    FIGURES.append(line)
    (REPO / "test-artifacts").mkdir(exist_ok=True)
    with (REPO / "test-artifacts" / "figures.txt").open("a") as fh:
        fh.write(line + "\n")


def pytest_sessionstart(session: pytest.Session) -> None:
    (REPO / "test-artifacts" / "figures.txt").unlink(missing_ok=True)  # this run's figures only


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if FIGURES:
        terminalreporter.section("measured")
        for line in FIGURES:
            terminalreporter.write_line(line)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if HAS_SHARED:
        return
    skip = pytest.mark.skip(reason=NO_SHARED)
    for item in items:
        if "shared" in item.keywords:
            item.add_marker(skip)


def toml_value(value: Any) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, (int, float)):
        return repr(value)
    return json.dumps(str(value))  # a JSON string is a valid TOML basic string


def write_manifest(path: Path, entries: list[dict[str, Any]]) -> Path:
    blocks = ["[[models]]\n" + "".join(f"{k} = {toml_value(v)}\n" for k, v in e.items()) for e in entries]
    path.write_text("\n".join(blocks), encoding="utf-8")
    return path


def aiy_entry(name: str, group: str, background: int, common: str) -> dict[str, Any]:
    folder = MODELS / name
    return {
        "name": name,
        "task": "classifier",
        "format": "tflite",
        "version": "3",
        "group": group,
        "file": str(folder / "model.tflite"),
        "labels": str(folder / "labelmap.csv"),
        "common_names": str(folder / common),
        "background_index": background,
        "input": {"size": [224, 224], "dtype": "uint8", "range": [0, 255]},
    }


def insects_features_entry(**overrides: Any) -> dict[str, Any]:
    """The real embedder: the insects model's 1280-d pre-logits tensor."""
    return {
        "name": "aiy_insects_features",
        "task": "embedder",
        "format": "tflite",
        "version": "3",
        "file": str(MODELS / "aiy_insects_v1" / "model.tflite"),
        "output_key": "module/AvgPool/AvgPool",
        "input": {"size": [224, 224], "dtype": "uint8", "range": [0, 255]},
        "output": "features",
        **overrides,
    }


def embedder_entry(model: Path, name: str = "test_embedder") -> dict[str, Any]:
    """A test-built SavedModel with the iNat InceptionV3's contract (299x299 float32 in [0, 1])."""
    return {
        "name": name,
        "task": "embedder",
        "format": "saved_model",
        "version": "test",
        "file": str(model),
        "output_key": "feature_vector",
        "input": {"size": [299, 299], "dtype": "float32", "range": [0.0, 1.0]},
        "output": "features",
    }


BIRDS = ("aiy_birds_v1", "bird", 964, "inat_bird_labels.txt")
INSECTS = ("aiy_insects_v1", "insect", 1021, "inat_insect_labels.txt")


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


def plants_entry(model: Path, labels: tuple[Path, Path | None]) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": "test_plants_savedmodel",
        "task": "classifier",
        "format": "saved_model",
        "version": "test",
        "group": "plant",
        "file": str(model),
        "labels": str(labels[0]),
        "background_index": 2101,
        "input": {"size": [224, 224], "dtype": "float32", "range": [0.0, 1.0]},
    }
    if labels[1] is not None:
        entry["common_names"] = str(labels[1])
    return entry


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


def service_env(manifest: Path, **extra: str) -> dict[str, str]:
    return {
        "MODELS_MANIFEST": str(manifest),
        "ALLOW_PRIVATE_NETWORKS": "true",  # the image host is on loopback
        "MAX_UPLOAD_BYTES": str(MAX_UPLOAD),
        "MAX_DOWNLOAD_BYTES": str(MAX_DOWNLOAD),
        "FETCH_READ_TIMEOUT": str(READ_TIMEOUT),
        "FETCH_TOTAL_TIMEOUT": "5",
        "INFERENCE_WORKERS": "2",
        **extra,
    }


def gbif_env(manifest: Path, fake: FakeGbif, cache: Path, **extra: str) -> dict[str, str]:
    return service_env(
        manifest,
        GBIF_API_URL=fake.base_url,
        GBIF_CACHE_PATH=str(cache),
        GBIF_READ_TIMEOUT="0.5",
        GBIF_TOTAL_TIMEOUT="2",
        GBIF_BACKOFF="0.05",
        GBIF_RETRIES="2",
        GBIF_MAX_CONCURRENCY="2",
        **extra,
    )


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
