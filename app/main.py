"""The app factory and its lifespan.

``app.main:app`` is what uvicorn serves (``uvicorn app.main:create_app --factory`` works too).
Creating the app reads no settings and loads nothing: ``Settings()`` is built when the server
starts, and the models load in a worker thread after start-up, so /health/live answers at once
and /health/ready turns 200 when they are in. Every resource is closed through one
``AsyncExitStack``: one failing to close does not keep the others open.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager, suppress

from fastapi import FastAPI

from app import __version__
from app.api.access import RateLimiter
from app.api.errors import install_error_handlers
from app.api.main import api_router
from app.api.middleware import BodySizeLimit, ConfiguredCORS, RequestDeadline
from app.api.routes import web
from app.enrich.gbif import open_gbif
from app.enrich.geo import GeoPrior
from app.enrich.taxonomies import TaxonomyBook
from app.imaging.fetch import ImageFetcher, build_client
from app.index.store import IndexStore
from app.metrics import Metrics, MetricsMiddleware
from app.models.registry import Registry, read_manifests
from app.models.runner import InferenceRunner
from app.services.geo import GeoWeighting
from app.services.identify import Identifier
from app.services.index_writes import IndexWriter
from app.services.lookup import Lookup
from app.services.observation import ObservationService
from app.services.reload import watch_manifest
from app.settings import Settings

log = logging.getLogger("app")


async def _open(app: FastAPI, config: Settings, stack: AsyncExitStack) -> None:
    """Builds everything the handlers reach through ``app.api.deps``; each closer is pushed as
    soon as its resource exists."""
    state, metrics = app.state, app.state.metrics
    manifest = read_manifests(config.models)
    registry = Registry.from_settings(manifest, config.models, on_batch=metrics.observe_batch)
    stack.callback(registry.close)
    runner = InferenceRunner(workers=config.models.inference_workers, max_queue=config.models.max_queue)
    stack.push_async_callback(asyncio.to_thread, runner.shutdown)
    state.gbif = await stack.enter_async_context(open_gbif(config.gbif))
    client = await stack.enter_async_context(build_client(config.fetch))
    taxonomies = TaxonomyBook()
    max_pixels = config.images.max_pixels
    store = IndexStore(config.index.dir, registry)
    state.settings, state.registry, state.runner, state.index_store = config, registry, runner, store
    state.fetcher = ImageFetcher(client, config.fetch)
    state.explain_slots = asyncio.Semaphore(config.models.explain_concurrency)
    geo = GeoWeighting(GeoPrior(state.gbif, config.gbif))  # one prior: its per-cell lookups are shared
    state.identifier = Identifier(
        runner, taxonomies, config.ranking, max_pixels=max_pixels, observer=metrics, geo=geo
    )
    state.lookup = Lookup(
        store, runner, taxonomies, config.index, config.ranking, max_pixels=max_pixels, observer=metrics
    )
    state.index_writer = IndexWriter(state.lookup, runner, max_pixels=max_pixels)
    state.observation = ObservationService(
        registry, runner, taxonomies, config.ranking, max_pixels=max_pixels,
        geo=geo, lookup=state.lookup, observer=metrics,
    )  # fmt: skip
    security = config.security
    state.rate_limiter = (
        RateLimiter(security.rate_limit_per_minute, security.rate_limit_burst)
        if security.rate_limit_per_minute
        else None
    )

    def load() -> None:
        registry.load_all()
        store.refresh()  # after the models: the index names its embedder
        for model in registry.entries():  # read taxonomy files now, not on a first request
            taxonomies.get(model.taxonomy_path)

    loading = asyncio.create_task(asyncio.to_thread(load))
    stack.push_async_callback(asyncio.shield, loading)  # a thread cannot be cancelled: let it finish
    if config.models.reload_interval:
        watching = asyncio.create_task(_after(loading, registry, config))
        stack.push_async_callback(_cancel, watching)
    log.info(
        "serving; loading %d models from %s (+ %s where present)",
        len(manifest.models), config.models.manifest, config.models.user_manifest,
    )  # fmt: skip


async def _after(loading: asyncio.Task[None], registry: Registry, config: Settings) -> None:
    await loading
    await watch_manifest(registry, config.models, config.models.reload_interval)


async def _cancel(task: asyncio.Task[None]) -> None:
    task.cancel()
    with suppress(asyncio.CancelledError):
        await task


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or Settings()
        level = config.server.log_level.upper()
        logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
        async with AsyncExitStack() as stack:
            await _open(app, config, stack)
            yield

    app = FastAPI(
        title="Species identification service",
        version=__version__,
        description=(
            "Identify birds, insects and plants in a photo with the AIY vision classifiers, or look "
            "any indexed species up by image similarity (`/img_url`). Send a photo by URL "
            "(`img_url`) or as an upload (`image`); get ranked species."
        ),
        lifespan=lifespan,
    )
    app.state.metrics = Metrics(app.state)
    app.state.metrics.info.labels(__version__).set(1)
    install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(web.router)
    app.mount("/web", web.static, name="web")
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestDeadline)
    app.add_middleware(MetricsMiddleware)  # outside the deadline: a 503 from it is counted too
    app.add_middleware(ConfiguredCORS)  # outermost: preflights are answered before anything else
    return app


app = create_app()
