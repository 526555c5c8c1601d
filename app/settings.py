"""The one configuration object, in groups: models, ranking, images, fetch, index, gbif,
security, server.

Every knob is still the environment variable it always was (``MODELS_MANIFEST``,
``ALLOW_PRIVATE_NETWORKS``, ``FETCH_CONNECT_TIMEOUT``, ...) or a line in ``.env``: each group
reads its own variables, by its prefix or by a field's alias. Nothing reads the environment at
import time: ``Settings()`` is built by the app factory's lifespan or by the CLI, and each
component is handed only the group it needs (the fetcher its ``FetchSettings``, the GBIF client
its ``GbifSettings``), so tests configure a server purely through its environment.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

PositiveFloat = Annotated[float, Field(gt=0)]


def _config(prefix: str = "") -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True)


def _env(name: str, **field: Any) -> Any:
    """A field read from the variable ``name`` (whatever the group's prefix), also settable in
    code by its field name."""
    return Field(validation_alias=AliasChoices(name, name.lower()), **field)


def _default_workers() -> int:
    # One more than the cores: a worker that has just finished a GIL-free call (decode, invoke)
    # waits for the GIL, and the spare keeps the cores busy meanwhile. Measured on 2 cores,
    # 16 concurrent uploads: 2 workers kept the cores 89 % busy, 3 kept them 95 % (+8 % img/s).
    return max(2, min((os.cpu_count() or 1) + 1, 9))


class ModelSettings(BaseSettings):
    model_config = _config()

    manifest: Path = _env("MODELS_MANIFEST", default=Path("volumes/models/models.toml"))
    # The user's own models (train-head writes here), merged with the shipped manifest; a name
    # in both is an error. Default: local.toml beside MODELS_MANIFEST (git-ignored).
    user_manifest_file: Path | None = _env("MODELS_USER_MANIFEST", default=None)
    # Ready means every model that could be loaded has been; with this on, one missing or
    # broken model keeps /health/ready at 503 (for deployments that must serve all groups).
    require_all: bool = _env("REQUIRE_ALL_MODELS", default=False)
    # Seconds between re-reads of the manifest (new or changed entries are loaded, as by
    # POST /v1/models/reload); 0 = only on that request. Replicas set it: a reload request
    # reaches one replica, a changed manifest on a shared volume reaches them all.
    reload_interval: float = _env("MODELS_RELOAD_INTERVAL", default=0.0, ge=0.0, le=86400.0)
    # Worker threads for decode + inference; each TFLite model keeps one interpreter per worker.
    inference_workers: int = _env("INFERENCE_WORKERS", default_factory=_default_workers, ge=1, le=64)
    # Threads inside one TFLite interpreter. With one interpreter per worker, 1 keeps the
    # cores busy without oversubscription.
    tflite_threads: int = _env("TFLITE_THREADS", default=1, ge=1, le=64)
    # Requests admitted beyond the busy workers before new ones get 503 + Retry-After.
    max_queue: int = _env("MAX_QUEUE", default=64, ge=0)
    # SavedModel models: concurrent requests gathered into one call of at most this many images,
    # waiting at most this long for company (1 = no batching).
    batch_max_size: int = _env("BATCH_MAX_SIZE", default=16, ge=1, le=256)
    batch_max_wait_ms: float = _env("BATCH_MAX_WAIT_MS", default=2.0, ge=0.0, le=1000.0)
    # POST /v1/explain costs ~170 model calls: at most this many run at once; more get 503 at
    # once, so saliency maps cannot crowd identifications out of the workers.
    explain_concurrency: int = _env("EXPLAIN_CONCURRENCY", default=1, ge=1, le=64)

    @property
    def user_manifest(self) -> Path:
        return self.user_manifest_file or self.manifest.with_name("local.toml")


class RankingSettings(BaseSettings):
    model_config = _config()

    top_k_default: int = _env("TOP_K_DEFAULT", default=5, ge=1, le=100)
    # Below this best species probability the answer is flagged no_match (low confidence).
    min_score: float = _env("MIN_SCORE", default=0.1, ge=0.0, le=1.0)
    # Taxonomic rollup: under this best-species score, report the deepest taxon whose summed
    # score reaches it (e.g. "genus Vanessa, 0.93").
    rollup_threshold: float = _env("ROLLUP_THRESHOLD", default=0.8, gt=0.0, le=1.0)
    # Installed species lists (`species_list=NAME` -> NAME.txt or NAME.csv here); relative to the
    # working directory, like INDEX_DIR. Contents are the operator's, not tracked.
    lists_dir: Path = _env("LISTS_DIR", default=Path("volumes/lists"))
    # An uploaded or installed list larger than this is refused (413): 512 KiB holds ~20,000
    # names and stays inside the request body's allowance for form fields beside the photos.
    species_list_max_bytes: int = _env("SPECIES_LIST_MAX_BYTES", default=512 * 1024, gt=0, le=1024 * 1024)


class ImageSettings(BaseSettings):
    model_config = _config()

    max_upload_bytes: int = _env("MAX_UPLOAD_BYTES", default=20 * 1024 * 1024, gt=0)
    # Below Pillow's default (89 Mpx): a 48 Mpx phone photo passes, a decompression bomb does not.
    max_pixels: int = _env("MAX_IMAGE_PIXELS", default=60_000_000, gt=0)


class FetchSettings(BaseSettings):
    """Downloading ``img_url``: every address is hostile until checked."""

    model_config = _config("FETCH_")

    allow_private_networks: bool = _env("ALLOW_PRIVATE_NETWORKS", default=False)
    # When set, only these hosts (a name matches itself and its subdomains) or networks (CIDR) are
    # fetched from; addresses inside a listed network pass even if private (an internal image store).
    allowed_hosts: list[str] = []
    max_download_bytes: int = _env("MAX_DOWNLOAD_BYTES", default=20 * 1024 * 1024, gt=0)
    connect_timeout: PositiveFloat = 5.0
    read_timeout: PositiveFloat = 10.0
    total_timeout: PositiveFloat = 20.0
    max_redirects: int = Field(default=3, ge=0, le=10)
    user_agent: str = "species-id/0.1"


class IndexSettings(BaseSettings):
    model_config = _config("INDEX_")

    # Relative to the working directory: /srv in the image, the checkout for `make serve`.
    dir: Path = Path("volumes/index")
    neighbours: int = Field(default=20, ge=1, le=1000)  # k nearest photos that vote
    # Softmax temperature over cosine similarities: lower lets the nearest photos dominate.
    temperature: PositiveFloat = 0.05
    ef_search: int = Field(default=128, ge=1, le=4096)  # HNSW indexes only


class GbifSettings(BaseSettings):
    model_config = _config("GBIF_")

    api_url: str = "https://api.gbif.org/v1"
    connect_timeout: PositiveFloat = 3.0
    read_timeout: PositiveFloat = 5.0
    total_timeout: PositiveFloat = 8.0  # retries included: a caller waits no longer
    retries: int = Field(default=2, ge=0, le=10)
    backoff: PositiveFloat = 0.25  # seconds, doubled per retry (Retry-After wins)
    max_concurrency: int = Field(default=4, ge=1, le=64)
    cache_path: Path = Path("volumes/cache/gbif.sqlite")
    cache_ttl_s: PositiveFloat = 7 * 24 * 3600.0
    user_agent: str = _env("FETCH_USER_AGENT", default="species-id/0.1")
    # The "seen nearby" prior (app/enrich/geo.py): one GBIF occurrence search per grid cell.
    prior_cell_deg: float = Field(default=1.0, gt=0, le=10)  # cell size in degrees, cells on multiples
    prior_floor: float = Field(default=0.1, gt=0, le=1)  # weight of a species GBIF never recorded there
    prior_half_saturation: PositiveFloat = 5.0  # records at which a weight is halfway from floor to 1
    prior_facet_limit: int = Field(default=1000, ge=10, le=10000)  # the cell's most recorded species asked
    prior_timeout: PositiveFloat = 2.0  # seconds, slot wait and retries included: then no prior, said so


class SecuritySettings(BaseSettings):
    model_config = _config()

    # X-API-Key values accepted by the photo and GBIF endpoints; empty = open (e.g. behind a gateway).
    api_keys: list[SecretStr] = _env("API_KEYS", default=[])
    # Bearer token for index writes and model reloads; unset disables both over HTTP.
    admin_token: SecretStr | None = _env("ADMIN_TOKEN", default=None)
    # Requests per minute per API key (per client address without keys); 0 = no limit.
    rate_limit_per_minute: int = _env("RATE_LIMIT_PER_MINUTE", default=0, ge=0)
    rate_limit_burst: int | None = _env("RATE_LIMIT_BURST", default=None, ge=1)  # default: per minute
    # Origins allowed to call the API from a browser; empty = no CORS headers (closed).
    cors_origins: list[str] = _env("CORS_ORIGINS", default=[])


class ServerSettings(BaseSettings):
    model_config = _config()

    host: str = _env("HOST", default="127.0.0.1")
    port: int = _env("PORT", default=8000, ge=0, le=65535)
    log_level: Literal["critical", "error", "warning", "info", "debug"] = _env("LOG_LEVEL", default="info")
    # A request still running after this many seconds is answered 503 and abandoned.
    request_timeout: PositiveFloat = _env("REQUEST_TIMEOUT", default=30.0)


class Settings(BaseModel):
    """All groups; ``Settings()`` reads each from the environment. In code (tests, the CLI's
    Ray actors), override a group: ``Settings(models=ModelSettings(manifest=path))``."""

    model_config = ConfigDict(frozen=True)

    models: ModelSettings = Field(default_factory=ModelSettings)
    ranking: RankingSettings = Field(default_factory=RankingSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    gbif: GbifSettings = Field(default_factory=GbifSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)


def environment_variables() -> dict[str, str]:
    """Every variable the settings read -> ``group.field``: for documentation and for checking
    deployment files name only real variables."""
    names: dict[str, str] = {}
    for group, info in Settings.model_fields.items():
        cls = info.annotation
        assert isinstance(cls, type) and issubclass(cls, BaseSettings)
        prefix = str(cls.model_config.get("env_prefix", ""))
        for field, spec in cls.model_fields.items():
            alias = spec.validation_alias
            env = alias.choices[0] if isinstance(alias, AliasChoices) else f"{prefix}{field}"
            names[str(env).upper()] = f"{group}.{field}"
    return names
