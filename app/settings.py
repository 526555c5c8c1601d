"""The one configuration object.

Every knob is an environment variable of the same name in upper case (``MODELS_MANIFEST``,
``ALLOW_PRIVATE_NETWORKS``, ...), or a line in a ``.env`` file. Nothing reads the environment
at import time: ``Settings()`` is built in the app factory's lifespan or by the CLI, so tests
configure a server purely through its environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveFloat = Annotated[float, Field(gt=0)]


def _default_workers() -> int:
    # One more than the cores: a worker that has just finished a GIL-free call (decode, invoke)
    # waits for the GIL, and the spare keeps the cores busy meanwhile. Measured on 2 cores,
    # 16 concurrent uploads: 2 workers kept the cores 89 % busy, 3 kept them 95 % (+8 % img/s).
    return max(2, min((os.cpu_count() or 1) + 1, 9))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    # --- models -------------------------------------------------------------------------
    models_manifest: Path = Path("volumes/models/models.toml")
    # Ready means every model that could be loaded has been; with this on, one missing or
    # broken model keeps /health/ready at 503 (for deployments that must serve all groups).
    require_all_models: bool = False
    # Seconds between re-reads of the manifest (new or changed entries are loaded, as by
    # POST /v1/models/reload); 0 = only on that request. Replicas set it: a reload request
    # reaches one replica, a changed manifest on a shared volume reaches them all.
    models_reload_interval: float = Field(default=0.0, ge=0.0, le=86400.0)
    # Worker threads for decode + inference; each TFLite model keeps one interpreter per worker.
    inference_workers: int = Field(default_factory=_default_workers, ge=1, le=64)
    # Threads inside one TFLite interpreter. With one interpreter per worker, 1 keeps the
    # cores busy without oversubscription.
    tflite_threads: int = Field(default=1, ge=1, le=64)
    # Requests admitted beyond the busy workers before new ones get 503 + Retry-After.
    max_queue: int = Field(default=64, ge=0)
    # SavedModel models: concurrent requests gathered into one call of at most this many images,
    # waiting at most this long for company (1 = no batching).
    batch_max_size: int = Field(default=16, ge=1, le=256)
    batch_max_wait_ms: float = Field(default=2.0, ge=0.0, le=1000.0)
    # POST /v1/explain costs ~170 model calls: at most this many run at once; more get 503 at
    # once, so saliency maps cannot crowd identifications out of the workers.
    explain_concurrency: int = Field(default=1, ge=1, le=64)

    # --- ranking ------------------------------------------------------------------------
    top_k_default: int = Field(default=5, ge=1, le=100)
    # Below this best species probability the answer is flagged no_match (low confidence).
    min_score: float = Field(default=0.1, ge=0.0, le=1.0)

    # --- species index (/img_url) ------------------------------------------------------
    # Relative to the working directory: /srv in the image, the checkout for `make serve`.
    index_dir: Path = Path("volumes/index")
    index_neighbours: int = Field(default=20, ge=1, le=1000)  # k nearest photos that vote
    # Softmax temperature over cosine similarities: lower lets the nearest photos dominate.
    index_temperature: PositiveFloat = 0.05
    index_ef_search: int = Field(default=128, ge=1, le=4096)  # HNSW indexes only
    # Bearer token for POST /v1/index/items; unset disables index writes over HTTP.
    admin_token: SecretStr | None = None

    # --- GBIF ---------------------------------------------------------------------------
    gbif_api_url: str = "https://api.gbif.org/v1"
    gbif_connect_timeout: PositiveFloat = 3.0
    gbif_read_timeout: PositiveFloat = 5.0
    gbif_total_timeout: PositiveFloat = 8.0  # retries included: a caller waits no longer
    gbif_retries: int = Field(default=2, ge=0, le=10)
    gbif_backoff: PositiveFloat = 0.25  # seconds, doubled per retry (Retry-After wins)
    gbif_max_concurrency: int = Field(default=4, ge=1, le=64)
    gbif_cache_path: Path = Path("volumes/cache/gbif.sqlite")
    gbif_cache_ttl_s: PositiveFloat = 7 * 24 * 3600.0
    # Taxonomic rollup: under this best-species score, report the deepest taxon whose summed
    # score reaches it (e.g. "genus Vanessa, 0.93").
    rollup_threshold: float = Field(default=0.8, gt=0.0, le=1.0)

    # --- image input --------------------------------------------------------------------
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    max_download_bytes: int = Field(default=20 * 1024 * 1024, gt=0)
    # Below Pillow's default (89 Mpx): a 48 Mpx phone photo passes, a decompression bomb does not.
    max_image_pixels: int = Field(default=60_000_000, gt=0)

    # --- fetching image URLs ------------------------------------------------------------
    allow_private_networks: bool = False
    # When set, only these hosts (a name matches itself and its subdomains) or networks (CIDR) are
    # fetched from; addresses inside a listed network pass even if private (an internal image store).
    fetch_allowed_hosts: list[str] = []
    fetch_connect_timeout: PositiveFloat = 5.0
    fetch_read_timeout: PositiveFloat = 10.0
    fetch_total_timeout: PositiveFloat = 20.0
    fetch_max_redirects: int = Field(default=3, ge=0, le=10)
    fetch_user_agent: str = "species-id/0.1"

    # --- access ---------------------------------------------------------------------------
    # X-API-Key values accepted by the photo and GBIF endpoints; empty = open (e.g. behind a gateway).
    api_keys: list[SecretStr] = []
    # Requests per minute per API key (per client address without keys); 0 = no limit.
    rate_limit_per_minute: int = Field(default=0, ge=0)
    rate_limit_burst: int | None = Field(default=None, ge=1)  # default: the per-minute figure
    # Origins allowed to call the API from a browser; empty = no CORS headers (closed).
    cors_origins: list[str] = []
    # A request still running after this many seconds is answered 503 and abandoned.
    request_timeout: PositiveFloat = 30.0

    # --- serving ------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = "info"
