"""The one configuration object, in groups, one per component that reads it: models, admission,
ranking, lists, images, fetch, index, gbif, geo_prior, security, server.

Each group reads the environment variables (or ``.env`` lines) named by its prefix and the field:
``MODELS_MANIFEST``, ``ADMISSION_MAX_QUEUE``, ``GEO_PRIOR_TIMEOUT``. A field that had another
name before the groups (``MAX_QUEUE``, ``GBIF_PRIOR_TIMEOUT``, ``HOST``) still reads it, after
the new one: the new name wins when both are set, and ``Settings()`` logs each old name it finds
in the environment. docs/configuration.md lists them all; it is generated from these classes
(``make config-docs``, app/settings_reference.py), so the descriptions below are the reference.

Nothing reads the environment at import time: ``Settings()`` is built by the app factory's
lifespan or by the CLI, and each component is handed only the group it needs (the fetcher its
``FetchSettings``, the geo prior its ``GeoPriorSettings``), so tests configure a server purely
through its environment.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger(__name__)

PositiveFloat = Annotated[float, Field(gt=0)]


def _config(prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=prefix, env_file=".env", extra="ignore", populate_by_name=True)


def _env(name: str, *deprecated: str, **field: Any) -> Any:
    """A field read from the variable ``name``, else from its ``deprecated`` names (in that order,
    so the new name wins); set in code by its field name (``populate_by_name``). The field name is
    no choice of its own: a bare ``TIMEOUT`` or ``DIR`` in the environment must set nothing."""
    return Field(validation_alias=AliasChoices(name, *deprecated), **field)


def _default_workers() -> int:
    """the cores + 1, at least 2, at most 9"""
    # One more than the cores: a worker that has just finished a GIL-free call (decode, invoke)
    # waits for the GIL, and the spare keeps the cores busy meanwhile. Measured on 2 cores,
    # 16 concurrent uploads: 2 workers kept the cores 89 % busy, 3 kept them 95 % (+8 % img/s).
    return max(2, min((os.cpu_count() or 1) + 1, 9))


class ModelSettings(BaseSettings):
    """The model registry: which manifests it reads, when it re-reads them, and how a loaded model
    runs (TFLite threads, a SavedModel's micro-batches)."""

    model_config = _config("MODELS_")

    manifest: Path = Field(
        default=Path("volumes/models/models.toml"), description="The shipped model manifest (tracked)."
    )
    user_manifest_file: Path | None = _env(
        "MODELS_USER_MANIFEST",
        default=None,
        description="The user's own models (train-head writes here), merged with the shipped manifest; "
        "a name in both is an error. Unset: `local.toml` beside `MODELS_MANIFEST` (git-ignored).",
    )
    require_all: bool = _env(
        "MODELS_REQUIRE_ALL",
        "REQUIRE_ALL_MODELS",
        default=False,
        description="Ready means every model that could be loaded has been; with this on, one missing "
        "or broken model keeps /health/ready at 503 (for deployments that must serve all groups).",
    )
    reload_interval: float = Field(
        default=0.0,
        ge=0.0,
        le=86400.0,
        description="Seconds between re-reads of the manifest (new or changed entries are loaded, as by "
        "POST /v1/models/reload); 0 = only on that request. Replicas set it: a reload request reaches "
        "one replica, a changed manifest on a shared volume reaches them all.",
    )
    tflite_threads: int = _env(
        "MODELS_TFLITE_THREADS",
        "TFLITE_THREADS",
        default=1,
        ge=1,
        le=64,
        description="Threads inside one TFLite interpreter. With one interpreter per inference worker, "
        "1 keeps the cores busy without oversubscription.",
    )
    batch_max_size: int = _env(
        "MODELS_BATCH_MAX_SIZE",
        "BATCH_MAX_SIZE",
        default=16,
        ge=1,
        le=256,
        description="SavedModel models: concurrent requests are gathered into one call of at most this "
        "many images (1 = no batching).",
    )
    batch_max_wait_ms: float = _env(
        "MODELS_BATCH_MAX_WAIT_MS",
        "BATCH_MAX_WAIT_MS",
        default=2.0,
        ge=0.0,
        le=1000.0,
        description="How long a SavedModel batch waits for company before it runs (milliseconds).",
    )

    @property
    def user_manifest(self) -> Path:
        return self.user_manifest_file or self.manifest.with_name("local.toml")


class AdmissionSettings(BaseSettings):
    """Who gets in: the inference runner's worker threads and queue, and the slots for saliency
    maps. Work beyond them is refused at once (503 `overloaded`), never queued without bound."""

    model_config = _config("ADMISSION_")

    inference_workers: int = _env(
        "ADMISSION_INFERENCE_WORKERS",
        "INFERENCE_WORKERS",
        default_factory=_default_workers,
        ge=1,
        le=64,
        description="Worker threads for decode + inference; each TFLite model keeps one interpreter "
        "per worker. Also the CLI's default `--workers`.",
    )
    max_queue: int = _env(
        "ADMISSION_MAX_QUEUE",
        "MAX_QUEUE",
        default=64,
        ge=0,
        description="Requests admitted beyond the busy workers (and SavedModel calls waiting for a "
        "batch) before new ones get 503 + Retry-After.",
    )
    explain_concurrency: int = _env(
        "ADMISSION_EXPLAIN_CONCURRENCY",
        "EXPLAIN_CONCURRENCY",
        default=1,
        ge=1,
        le=64,
        description="POST /v1/explain costs ~170 model calls: at most this many run at once; more get "
        "503 at once, so saliency maps cannot crowd identifications out of the workers.",
    )


class RankingSettings(BaseSettings):
    """Turning a model's scores into an answer: how many guesses, when it is no match, when to
    roll up to a higher taxon. Defaults for the per-request `top_k`, `min_score` and
    `rollup_threshold`."""

    model_config = _config("RANKING_")

    top_k_default: int = _env(
        "RANKING_TOP_K_DEFAULT",
        "TOP_K_DEFAULT",
        default=5,
        ge=1,
        le=100,
        description="Results when a request gives no `top_k`.",
    )
    min_score: float = _env(
        "RANKING_MIN_SCORE",
        "MIN_SCORE",
        default=0.1,
        ge=0.0,
        le=1.0,
        description="Below this best species probability the answer is flagged no_match (low confidence).",
    )
    rollup_threshold: float = _env(
        "RANKING_ROLLUP_THRESHOLD",
        "ROLLUP_THRESHOLD",
        default=0.8,
        gt=0.0,
        le=1.0,
        description="Taxonomic rollup: under this best-species score, report the deepest taxon whose "
        'summed score reaches it (e.g. "genus Vanessa, 0.93").',
    )


class ListSettings(BaseSettings):
    """Species lists that steer an identification: the installed ones (`species_list=NAME`) and
    the uploaded ones, read by the species-list store."""

    model_config = _config("LISTS_")

    dir: Path = Field(
        default=Path("volumes/lists"),
        description="Installed species lists (`species_list=NAME` -> `NAME.txt` or `NAME.csv` here); "
        "relative to the working directory, like `INDEX_DIR`. Contents are the operator's, not tracked.",
    )
    max_bytes: int = _env(
        "LISTS_MAX_BYTES",
        "SPECIES_LIST_MAX_BYTES",
        default=512 * 1024,
        gt=0,
        le=1024 * 1024,
        description="An uploaded or installed list larger than this is refused (413): 512 KiB holds "
        "~20,000 names and stays inside the request body's allowance for form fields beside the photos.",
    )


class ImageSettings(BaseSettings):
    """Reading photos, uploaded or downloaded: the caps checked before any pixel is decoded."""

    model_config = _config("IMAGES_")

    max_upload_bytes: int = _env(
        "IMAGES_MAX_UPLOAD_BYTES",
        "MAX_UPLOAD_BYTES",
        default=20 * 1024 * 1024,
        gt=0,
        description="Largest uploaded photo (413 above); the request body's limit follows from it.",
    )
    max_pixels: int = _env(
        "IMAGES_MAX_PIXELS",
        "MAX_IMAGE_PIXELS",
        default=60_000_000,
        gt=0,
        description="Pixel cap, checked from the header before decoding. Below Pillow's default "
        "(89 Mpx): a 48 Mpx phone photo passes, a decompression bomb does not.",
    )


class FetchSettings(BaseSettings):
    """The image fetcher, downloading `img_url`: every address is hostile until checked."""

    model_config = _config("FETCH_")

    allow_private_networks: bool = _env(
        "FETCH_ALLOW_PRIVATE_NETWORKS",
        "ALLOW_PRIVATE_NETWORKS",
        default=False,
        description="Fetch from addresses that resolve to loopback, private or link-local networks "
        "(off: such a URL is refused, 400 `url_not_allowed`).",
    )
    allowed_hosts: list[str] = Field(
        default=[],
        description="When set, only these hosts (a name matches itself and its subdomains) "
        "or networks (CIDR) are fetched from; addresses inside a listed network pass even if private "
        "(an internal image store).",
    )
    max_download_bytes: int = _env(
        "FETCH_MAX_DOWNLOAD_BYTES",
        "MAX_DOWNLOAD_BYTES",
        default=20 * 1024 * 1024,
        gt=0,
        description="Largest download; the body is streamed and cut off above it (413).",
    )
    connect_timeout: PositiveFloat = Field(default=5.0, description="Seconds to connect to the host.")
    read_timeout: PositiveFloat = Field(default=10.0, description="Seconds between two reads.")
    total_timeout: PositiveFloat = Field(default=20.0, description="Seconds for the whole download.")
    max_redirects: int = Field(default=3, ge=0, le=10, description="Redirects followed, each hop checked.")
    user_agent: str = Field(default="species-id/0.1", description="The User-Agent of image downloads.")


class IndexSettings(BaseSettings):
    """The species index behind /img_url and the lookups: where it lives and how its nearest
    photos vote."""

    model_config = _config("INDEX_")

    dir: Path = Field(
        default=Path("volumes/index"),
        description="Relative to the working directory: /srv in the image, the checkout for `make serve`.",
    )
    neighbours: int = Field(default=20, ge=1, le=1000, description="k nearest photos that vote.")
    temperature: PositiveFloat = Field(
        default=0.05,
        description="Softmax temperature over cosine similarities: lower lets the nearest photos dominate.",
    )
    ef_search: int = Field(default=128, ge=1, le=4096, description="HNSW indexes only: the search breadth.")


class GbifSettings(BaseSettings):
    """The GBIF client: name matching, taxonomy and occurrence counts, with its SQLite cache."""

    model_config = _config("GBIF_")

    api_url: str = Field(default="https://api.gbif.org/v1", description="GBIF's API root.")
    connect_timeout: PositiveFloat = Field(default=3.0, description="Seconds to connect.")
    read_timeout: PositiveFloat = Field(default=5.0, description="Seconds between two reads.")
    total_timeout: PositiveFloat = Field(
        default=8.0, description="Seconds for one call, retries included: a caller waits no longer."
    )
    retries: int = Field(default=2, ge=0, le=10, description="Retries after a timeout, 429 or 5xx.")
    backoff: PositiveFloat = Field(
        default=0.25, description="Seconds before the first retry, doubled per retry (Retry-After wins)."
    )
    max_concurrency: int = Field(default=4, ge=1, le=64, description="Calls to GBIF in flight at once.")
    cache_path: Path = Field(
        default=Path("volumes/cache/gbif.sqlite"), description="The SQLite cache of GBIF's answers."
    )
    cache_ttl_s: PositiveFloat = Field(
        default=7 * 24 * 3600.0,
        description="Seconds a cached answer is fresh; a stale one still serves while GBIF fails.",
    )
    user_agent: str = _env(
        "GBIF_USER_AGENT",
        "FETCH_USER_AGENT",
        default="species-id/0.1",
        description="The User-Agent of GBIF calls (it followed `FETCH_USER_AGENT` before, and still "
        "does while this is unset).",
    )


class GeoPriorSettings(BaseSettings):
    """The "seen nearby" prior: how often GBIF has recorded each candidate species in the photo's
    grid cell weighs its score; the counts come from GBIF's occurrence search (one per cell and
    month, cached) or from a range table built offline from a GBIF download (`build-range`)."""

    model_config = _config("GEO_PRIOR_")

    source: Literal["gbif", "table", "off"] = Field(
        default="gbif",
        description="Where the counts come from: `gbif` (GBIF's occurrence search, per cell and month, "
        "cached), `table` (`GEO_PRIOR_TABLE`, no network per request; the month counts with its two "
        "neighbours) or `off` (no prior: answers say `geo.status` `off`).",
    )
    table: Path | None = Field(
        default=None,
        description="The range table `python -m app build-range` writes (SQLite), read when "
        "`GEO_PRIOR_SOURCE=table`; a rebuilt file is picked up without a restart. Missing or "
        "unreadable: answers without the prior, `geo.status` `unavailable`.",
    )
    cell_deg: float = _env(
        "GEO_PRIOR_CELL_DEG",
        "GBIF_PRIOR_CELL_DEG",
        default=1.0,
        gt=0,
        le=10,
        description="Cell size in degrees; cells are aligned on multiples of it. `build-range` grids "
        "a table with it; a table built with another size is read with its own (and a warning).",
    )
    floor: float = _env(
        "GEO_PRIOR_FLOOR",
        "GBIF_PRIOR_FLOOR",
        default=0.1,
        gt=0,
        le=1,
        description="The weight of a species GBIF never recorded in the cell.",
    )
    half_saturation: PositiveFloat = _env(
        "GEO_PRIOR_HALF_SATURATION",
        "GBIF_PRIOR_HALF_SATURATION",
        default=5.0,
        description="Records at which a species' weight is halfway from the floor to 1.",
    )
    facet_limit: int = _env(
        "GEO_PRIOR_FACET_LIMIT",
        "GBIF_PRIOR_FACET_LIMIT",
        default=1000,
        ge=10,
        le=10000,
        description="The cell's most recorded species asked of GBIF; one below them counts as "
        "unrecorded (`gbif` source).",
    )
    timeout: PositiveFloat = _env(
        "GEO_PRIOR_TIMEOUT",
        "GBIF_PRIOR_TIMEOUT",
        default=2.0,
        description="Seconds, slot wait and retries included; past it the answer goes without the "
        "prior, and says so (`gbif` source).",
    )

    @model_validator(mode="after")
    def _table_named(self) -> GeoPriorSettings:
        if self.source == "table" and self.table is None:
            raise ValueError("GEO_PRIOR_SOURCE=table needs GEO_PRIOR_TABLE (the file build-range writes)")
        return self


class SecuritySettings(BaseSettings):
    """Who may call: API keys, the admin token, rate limits and browser origins, checked by the
    access dependencies and the middleware."""

    model_config = _config("SECURITY_")

    api_keys: list[SecretStr] = _env(
        "SECURITY_API_KEYS",
        "API_KEYS",
        default=[],
        description="X-API-Key values accepted by the photo and GBIF endpoints; empty = "
        "open (e.g. behind a gateway).",
    )
    admin_token: SecretStr | None = _env(
        "SECURITY_ADMIN_TOKEN",
        "ADMIN_TOKEN",
        default=None,
        description="Bearer token for index writes and model reloads; unset disables both over HTTP.",
    )
    rate_limit_per_minute: int = _env(
        "SECURITY_RATE_LIMIT_PER_MINUTE",
        "RATE_LIMIT_PER_MINUTE",
        default=0,
        ge=0,
        description="Requests per minute per API key (per client address without keys); 0 = no limit.",
    )
    rate_limit_burst: int | None = _env(
        "SECURITY_RATE_LIMIT_BURST",
        "RATE_LIMIT_BURST",
        default=None,
        ge=1,
        description="Requests allowed in a burst (the bucket's size) before the per-minute rate "
        "applies; unset = the rate per minute.",
    )
    cors_origins: list[str] = _env(
        "SECURITY_CORS_ORIGINS",
        "CORS_ORIGINS",
        default=[],
        description="Origins allowed to call the API from a browser; empty = no CORS headers (closed).",
    )


class ServerSettings(BaseSettings):
    """The HTTP server (`python -m app serve`): where it listens, what it logs, how long a request
    may run."""

    model_config = _config("SERVER_")

    host: str = _env("SERVER_HOST", "HOST", default="127.0.0.1", description="Address to listen on.")
    port: int = _env("SERVER_PORT", "PORT", default=8000, ge=0, le=65535, description="Port to listen on.")
    log_level: Literal["critical", "error", "warning", "info", "debug"] = _env(
        "SERVER_LOG_LEVEL", "LOG_LEVEL", default="info", description="Logging level of the app and uvicorn."
    )
    request_timeout: PositiveFloat = _env(
        "SERVER_REQUEST_TIMEOUT",
        "REQUEST_TIMEOUT",
        default=30.0,
        description="A request still running after this many seconds is answered 503 and abandoned.",
    )


class Settings(BaseModel):
    """All groups; ``Settings()`` reads each from the environment. In code (tests, the CLI's
    Ray actors), override a group: ``Settings(models=ModelSettings(manifest=path))``."""

    model_config = ConfigDict(frozen=True)

    models: ModelSettings = Field(default_factory=ModelSettings)
    admission: AdmissionSettings = Field(default_factory=AdmissionSettings)
    ranking: RankingSettings = Field(default_factory=RankingSettings)
    lists: ListSettings = Field(default_factory=ListSettings)
    images: ImageSettings = Field(default_factory=ImageSettings)
    fetch: FetchSettings = Field(default_factory=FetchSettings)
    index: IndexSettings = Field(default_factory=IndexSettings)
    gbif: GbifSettings = Field(default_factory=GbifSettings)
    geo_prior: GeoPriorSettings = Field(default_factory=GeoPriorSettings)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    server: ServerSettings = Field(default_factory=ServerSettings)

    def model_post_init(self, context: Any, /) -> None:
        # Where the groups read from: the environment and the .env file beside the process.
        from_file = {k: v for k, v in dotenv_values(".env").items() if v is not None}
        for old, new in deprecated_in({**from_file, **os.environ}).items():
            log.warning("%s is a deprecated name: set %s instead", old, new)


def groups() -> dict[str, type[BaseSettings]]:
    """``Settings``' attribute -> its group's class, in the order of the reference."""
    out: dict[str, type[BaseSettings]] = {}
    for group, info in Settings.model_fields.items():
        cls = info.annotation
        assert isinstance(cls, type) and issubclass(cls, BaseSettings)
        out[group] = cls
    return out


def variable_names(cls: type[BaseSettings], field: str, info: FieldInfo) -> tuple[str, list[str]]:
    """A field's variable and the older names it still accepts, in the order they are tried."""
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        primary, *old = (str(choice).upper() for choice in alias.choices)
        return primary, old
    return f"{cls.model_config.get('env_prefix', '')}{field}".upper(), []


def _all_names() -> list[tuple[str, str, list[str]]]:
    """(``group.field``, its variable, its old names) for every field, in the reference's order."""
    return [
        (f"{group}.{field}", *variable_names(cls, field, info))
        for group, cls in groups().items()
        for field, info in cls.model_fields.items()
    ]


def environment_variables() -> dict[str, str]:
    """Every variable the settings read, new and deprecated names alike -> ``group.field``: for
    checking deployment files name only real variables. A name that is one field's variable and
    another's old name (``FETCH_USER_AGENT``) maps to the field it is the variable of."""
    fields = _all_names()
    current = {name for _, name, _ in fields}
    names: dict[str, str] = {}
    for where, name, olds in fields:
        names[name] = where
        names.update({old: where for old in olds if old not in current})
    return names


def deprecated_in(environ: Mapping[str, str]) -> dict[str, str]:
    """The deprecated names set in ``environ`` -> the variable that replaces each (a name that is
    some field's own variable too, such as ``FETCH_USER_AGENT``, is not deprecated)."""
    fields = _all_names()
    current = {name for _, name, _ in fields}
    present = {key.upper() for key in environ}
    return {old: name for _, name, olds in fields for old in olds if old in present and old not in current}
