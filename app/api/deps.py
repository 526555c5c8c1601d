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
from app.identification.lookup import Lookup
from app.identification.service import Identifier
from app.imaging.fetch import ImageFetcher
from app.index.store import IndexStore
from app.metrics import Metrics
from app.models.registry import Registry
from app.models.runner import InferenceRunner
from app.services.index_writes import IndexWriter
from app.settings import Settings
from app.wiring import Services


async def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(_services)]


async def _settings(services: ServicesDep) -> Settings:
    return services.settings


async def _registry(services: ServicesDep) -> Registry:
    return services.registry


async def _runner(services: ServicesDep) -> InferenceRunner:
    return services.runner


async def _fetcher(services: ServicesDep) -> ImageFetcher:
    return services.fetcher


async def _index_store(services: ServicesDep) -> IndexStore:
    return services.index_store


async def _gbif(services: ServicesDep) -> GbifClient:
    return services.gbif


async def _metrics(services: ServicesDep) -> Metrics:
    return services.metrics


async def _identifier(services: ServicesDep) -> Identifier:
    return services.identifier


async def _lookup(services: ServicesDep) -> Lookup:
    return services.lookup


async def _index_writer(services: ServicesDep) -> IndexWriter:
    return services.index_writer


async def _explain_slots(services: ServicesDep) -> asyncio.Semaphore:
    return services.explain_slots


async def _admin(
    request: Request,
    services: ServicesDep,
    authorization: Annotated[str | None, Header(description="Bearer <SECURITY_ADMIN_TOKEN>")] = None,
) -> None:
    require_admin(services.settings.security, authorization, f"{request.method} {request.url.path}")


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
ExplainSlotsDep = Annotated[asyncio.Semaphore, Depends(_explain_slots)]
AdminDep = Depends(_admin)  # in a route's ``dependencies``: admin token or 401/403
