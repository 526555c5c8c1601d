"""The environment the test servers run with."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.fakes.gbif import FakeGbif

# The limits the test server runs with, small enough to cross cheaply.
MAX_UPLOAD = 4_000_000
MAX_DOWNLOAD = 4_000_000
READ_TIMEOUT = 1.5


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
