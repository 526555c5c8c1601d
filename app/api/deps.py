"""Everything a handler needs, built once in the lifespan (``app.main``) and reached through
these aliases; handlers never touch ``app.state`` themselves.

The accessors are ``async def`` on purpose: FastAPI runs a plain ``def`` dependency in its
thread pool, and five thread hops per request cost the event loop more than a classification's
HTTP parsing does (measured with py-spy under load: ~12 % of the loop's time).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Header, Request

from app.api.access import require_admin
from app.enrich.gbif import GbifClient
from app.imaging.fetch import ImageFetcher
from app.index.store import IndexStore
from app.metrics import Metrics
from app.models.registry import Registry
from app.models.runner import InferenceRunner
from app.services.identify import Identifier
from app.services.index_writes import IndexWriter
from app.services.lookup import Lookup
from app.services.observation import ObservationService
from app.settings import Settings


async def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


async def _runner(request: Request) -> InferenceRunner:
    runner: InferenceRunner = request.app.state.runner
    return runner


async def _fetcher(request: Request) -> ImageFetcher:
    fetcher: ImageFetcher = request.app.state.fetcher
    return fetcher


async def _index_store(request: Request) -> IndexStore:
    store: IndexStore = request.app.state.index_store
    return store


async def _gbif(request: Request) -> GbifClient:
    gbif: GbifClient = request.app.state.gbif
    return gbif


async def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


async def _identifier(request: Request) -> Identifier:
    identifier: Identifier = request.app.state.identifier
    return identifier


async def _lookup(request: Request) -> Lookup:
    lookup: Lookup = request.app.state.lookup
    return lookup


async def _index_writer(request: Request) -> IndexWriter:
    writer: IndexWriter = request.app.state.index_writer
    return writer


async def _observation(request: Request) -> ObservationService:
    service: ObservationService = request.app.state.observation
    return service


async def _explain_slots(request: Request) -> asyncio.Semaphore:
    slots: asyncio.Semaphore = request.app.state.explain_slots
    return slots


async def _admin(
    request: Request,
    authorization: Annotated[str | None, Header(description="Bearer <ADMIN_TOKEN>")] = None,
) -> None:
    settings: Settings = request.app.state.settings
    require_admin(settings.security, authorization, f"{request.method} {request.url.path}")


SettingsDep = Annotated[Settings, Depends(_settings)]
RegistryDep = Annotated[Registry, Depends(_registry)]
RunnerDep = Annotated[InferenceRunner, Depends(_runner)]
FetcherDep = Annotated[ImageFetcher, Depends(_fetcher)]
IndexStoreDep = Annotated[IndexStore, Depends(_index_store)]
GbifDep = Annotated[GbifClient, Depends(_gbif)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
IdentifierDep = Annotated[Identifier, Depends(_identifier)]
LookupDep = Annotated[Lookup, Depends(_lookup)]
IndexWriterDep = Annotated[IndexWriter, Depends(_index_writer)]
ObservationDep = Annotated[ObservationService, Depends(_observation)]
ExplainSlotsDep = Annotated[asyncio.Semaphore, Depends(_explain_slots)]
AdminDep = Depends(_admin)  # in a route's ``dependencies``: admin token or 401/403
