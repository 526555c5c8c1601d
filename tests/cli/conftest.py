"""Fixtures for the command-line tests: manifests of the real models, Leeds photo subsets and a
Python start-up that hides the optional ``training`` extra."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.runner import cli_env
from tests.support.manifests import BIRDS, INSECTS, aiy_entry, insects_features_entry, write_manifest
from tests.support.reference import leeds
from tests.support.shared import HAS_SHARED, NO_SHARED, SHARED

# The training extra: what the Docker image leaves out.
TRAINING_EXTRA = ("sklearn", "matplotlib")


@pytest.fixture(scope="session")
def real_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real insects and birds classifiers and the insects embedder (tests using it are `shared`)."""
    folder = tmp_path_factory.mktemp("cli-models")
    entries = [aiy_entry(*INSECTS), aiy_entry(*BIRDS), insects_features_entry()]
    return write_manifest(folder / "models.toml", entries)


@pytest.fixture(scope="session")
def leeds_photos() -> list[tuple[Path, str]]:
    """The 300 Leeds photos with their species (names as the iNat 2017 label maps spell them)."""
    if not HAS_SHARED:
        pytest.skip(NO_SHARED)
    return leeds(SHARED)


@pytest.fixture(scope="session")
def leeds_csv(tmp_path_factory: pytest.TempPathFactory, leeds_photos: list[tuple[Path, str]]) -> Path:
    """The 300 Leeds photos as a CSV of path,label."""
    path = tmp_path_factory.mktemp("leeds") / "leeds.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "label"])
        writer.writerows((str(image), name) for image, name in leeds_photos)
    return path


@pytest.fixture(scope="session")
def without_training_extra(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for a Python that cannot import scikit-learn or matplotlib, as in the Docker
    image: a sitecustomize on PYTHONPATH marks them unimportable before anything runs."""
    folder = tmp_path_factory.mktemp("no-training-extra")
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in TRAINING_EXTRA)
    (folder / "sitecustomize.py").write_text("import sys\n\n" + blocked)
    env = {"PYTHONPATH": str(folder)}
    # The block holds: both are installed here, yet neither imports.
    for name in TRAINING_EXTRA:
        probe = subprocess.run(
            [sys.executable, "-c", f"import {name}"], env=cli_env(None, **env), capture_output=True, text=True
        )
        assert probe.returncode != 0 and "import of " + name + " halted" in probe.stderr, probe.stderr
    return env
