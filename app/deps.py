"""Everything a handler needs, built once in the lifespan and reached through these aliases."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from app.enrich.gbif import GbifClient
from app.imaging.fetch import ImageFetcher
from app.index.store import IndexStore
from app.metrics import Metrics
from app.models.registry import Registry
from app.models.runner import InferenceRunner
from app.settings import Settings


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def _registry(request: Request) -> Registry:
    registry: Registry = request.app.state.registry
    return registry


def _runner(request: Request) -> InferenceRunner:
    runner: InferenceRunner = request.app.state.runner
    return runner


def _fetcher(request: Request) -> ImageFetcher:
    fetcher: ImageFetcher = request.app.state.fetcher
    return fetcher


def _index_store(request: Request) -> IndexStore:
    store: IndexStore = request.app.state.index_store
    return store


def _gbif(request: Request) -> GbifClient:
    gbif: GbifClient = request.app.state.gbif
    return gbif


def _metrics(request: Request) -> Metrics:
    metrics: Metrics = request.app.state.metrics
    return metrics


SettingsDep = Annotated[Settings, Depends(_settings)]
RegistryDep = Annotated[Registry, Depends(_registry)]
RunnerDep = Annotated[InferenceRunner, Depends(_runner)]
FetcherDep = Annotated[ImageFetcher, Depends(_fetcher)]
IndexStoreDep = Annotated[IndexStore, Depends(_index_store)]
GbifDep = Annotated[GbifClient, Depends(_gbif)]
MetricsDep = Annotated[Metrics, Depends(_metrics)]
