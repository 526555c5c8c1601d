"""schemathesis against the service's own OpenAPI schema, on a real server: generated requests
(valid and not) to every operation; no answer may be a 5xx, and every answer must match the
schema the service publishes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.env import service_env
from tests.support.images import encode, photo
from tests.support.manifests import embedder_entry, plants_entry, write_manifest
from tests.support.models import build_embedder_savedmodel
from tests.support.server import REPO, ServiceProcess

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def fuzz_service(
    tmp_path_factory, plants_savedmodel, plant_labels, fake_gbif, artifacts
) -> Iterator[ServiceProcess]:
    root = tmp_path_factory.mktemp("fuzz")
    embedder = build_embedder_savedmodel(root / "embedder")
    classifiers = [
        {**plants_entry(plants_savedmodel, plant_labels), "name": f"test_{group}", "group": group}
        for group in ("bird", "insect", "plant")
    ]
    manifest = write_manifest(root / "models.toml", [*classifiers, embedder_entry(embedder)])
    for species in ("Aus_bus", "Cus_dus"):
        (root / "photos" / species).mkdir(parents=True)
        for k in range(3):
            (root / "photos" / species / f"{k}.png").write_bytes(
                encode(photo(200, 150, seed=k + len(species)), "PNG")
            )
    build = subprocess.run(
        [sys.executable, "-m", "app", "build-index", str(root / "photos"), "--out", str(root / "index"),
         "--embedder", "test_embedder", "--no-progress"],
        cwd=REPO, env={**os.environ, "MODELS_MANIFEST": str(manifest)},
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert build.returncode == 0, build.stderr
    env = service_env(
        manifest,
        INDEX_DIR=str(root / "index"),
        GBIF_API_URL=fake_gbif.base_url,
        GBIF_CACHE_PATH=str(root / "gbif.sqlite"),
        ALLOW_PRIVATE_NETWORKS="false",
        FETCH_ALLOWED_HOSTS='["images.invalid"]',  # generated URLs are refused by name, never looked up
    )
    proc = ServiceProcess(env, artifacts / "fuzz-service.log").start()
    yield proc
    proc.stop()


def test_schemathesis_finds_no_server_error_and_no_schema_violation(fuzz_service, artifacts):
    result = subprocess.run(
        [
            str(BIN / "st"), "run", f"{fuzz_service.base_url}/openapi.json",
            "--checks", "not_a_server_error,response_schema_conformance,content_type_conformance",
            "--max-examples", "25", "--seed", "1", "--request-timeout", "30", "--no-color",
        ],
        cwd=REPO, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    output = result.stdout + result.stderr
    (artifacts / "schemathesis.txt").write_text(output)
    cases = re.search(r"Test cases:\s*\n?\s*(\d+) generated", output)
    print(f"schemathesis: exit {result.returncode}; {cases.group(1) if cases else '?'} test cases generated")
    assert result.returncode == 0, output[-6000:]
    assert cases and int(cases[1]) >= 500, output[-6000:]  # measured 1653 (--max-examples 25, seed 1)
