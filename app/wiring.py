"""``open_services(settings)``: the one place the service's parts are put together, for the
server's lifespan and every command of the CLI alike, so a command answers exactly as the
server does.

Opening builds everything and loads nothing; ``Services.load`` (blocking: a worker thread)
loads the models, the served species index and the taxonomy files. The server starts it in the
background, so /health/live answers at once; a command loads in the foreground, and
``only=NAME`` loads just that model (and a head's embedder). Everything opened is closed on
exit, each closer pushed as soon as its resource exists.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass

from app.core.rate_limit import RateLimiter
from app.enrich.gbif import GbifClient, open_gbif
from app.enrich.geo import GeoPrior
from app.enrich.range_table import RangeTable
from app.enrich.taxonomies import TaxonomyBook
from app.identification.lookup import Lookup
from app.identification.service import Identifier
from app.identification.steer import GeoWeighting
from app.imaging.fetch import ImageFetcher, build_client
from app.index.store import IndexStore
from app.metrics import Metrics
from app.models.registry import Registry, read_manifests
from app.models.runner import InferenceRunner
from app.services.index_writes import IndexWriter
from app.settings import Settings


@dataclass(frozen=True)
class Services:
    """Everything a request or a command needs; the server keeps it as ``app.state.services``."""

    settings: Settings
    metrics: Metrics  # stage timings, batch sizes, queue depth: the server's /metrics
    registry: Registry
    runner: InferenceRunner
    taxonomies: TaxonomyBook
    gbif: GbifClient
    fetcher: ImageFetcher
    index_store: IndexStore
    identifier: Identifier
    lookup: Lookup
    index_writer: IndexWriter
    explain_slots: asyncio.Semaphore  # POST /v1/explain: at most this many at once
    rate_limiter: RateLimiter | None  # per API key (or client), when SECURITY_RATE_LIMIT_PER_MINUTE

    def load(self, index: bool = True) -> None:
        """Blocking; a worker thread. Never raises for one model's problem (its state says).
        ``index``: also the served species index (a command that opened one model does not)."""
        self.registry.load_all()
        if index:
            self.index_store.refresh()  # after the models: the index names its embedder
        for model in self.registry.entries():  # read taxonomy files now, not on a first request
            self.taxonomies.get(model.taxonomy_path)


@asynccontextmanager
async def open_services(settings: Settings, *, only: str | None = None) -> AsyncIterator[Services]:
    """``only``: open the registry with just this model (and a head's embedder)."""
    async with AsyncExitStack() as stack:
        metrics = observer = Metrics()
        manifest = read_manifests(settings.models, only)
        registry = Registry.from_settings(
            manifest, settings.models, settings.admission, on_batch=metrics.observe_batch
        )
        stack.callback(registry.close)
        admission = settings.admission
        runner = InferenceRunner(workers=admission.inference_workers, max_queue=admission.max_queue)
        metrics.watch(runner, registry)
        stack.push_async_callback(asyncio.to_thread, runner.shutdown)
        gbif = await stack.enter_async_context(open_gbif(settings.gbif))
        client = await stack.enter_async_context(build_client(settings.fetch))
        taxonomies = TaxonomyBook()
        max_pixels = settings.images.max_pixels
        store = IndexStore(settings.index.dir, registry)
        lookup = Lookup(
            store,
            runner,
            taxonomies,
            settings.index,
            settings.ranking,
            max_pixels=max_pixels,
            observer=observer,
        )
        geo_settings = settings.geo_prior
        table = None
        if geo_settings.source == "table" and geo_settings.table is not None:
            # Opened on the first photo with a place: a table built after the start is used.
            table = RangeTable(geo_settings.table, geo_settings.cell_deg)
            stack.callback(table.close)
        identifier = Identifier(
            registry,
            runner,
            taxonomies,
            settings.ranking,
            max_pixels=max_pixels,
            geo=GeoWeighting(GeoPrior(gbif, geo_settings, table)),  # one prior: its cell lookups are shared
            lookup=lookup,
            observer=observer,
        )
        security = settings.security
        yield Services(
            settings=settings,
            metrics=metrics,
            registry=registry,
            runner=runner,
            taxonomies=taxonomies,
            gbif=gbif,
            fetcher=ImageFetcher(client, settings.fetch),
            index_store=store,
            identifier=identifier,
            lookup=lookup,
            index_writer=IndexWriter(lookup, runner, max_pixels=max_pixels),
            explain_slots=asyncio.Semaphore(admission.explain_concurrency),
            rate_limiter=RateLimiter(security.rate_limit_per_minute, security.rate_limit_burst)
            if security.rate_limit_per_minute
            else None,
        )


@contextmanager
def running_services(
    config: Settings, *, only: str | None = None, workers: int | None = None, index: bool = True
) -> Iterator[tuple[Services, asyncio.Runner]]:
    """For code that is not a server (a command, a Ray actor): the services loaded in the
    foreground, with the event loop to run their coroutines on; ``workers``: in place of
    ADMISSION_INFERENCE_WORKERS; ``index``: also load the served species index. Everything is
    closed on exit."""
    if workers is not None:
        admission = config.admission.model_copy(update={"inference_workers": workers})
        config = config.model_copy(update={"admission": admission})
    with asyncio.Runner() as loop:
        context = open_services(config, only=only)
        services = loop.run(context.__aenter__())
        try:
            services.load(index=index and only is None)
            yield services, loop
        except BaseException as exc:
            if not loop.run(context.__aexit__(type(exc), exc, exc.__traceback__)):
                raise
        else:
            loop.run(context.__aexit__(None, None, None))
