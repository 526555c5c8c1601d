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
from app.api.errors import install_error_handlers
from app.api.main import api_router
from app.api.middleware import BodySizeLimit, ConfiguredCORS, RequestDeadline
from app.api.routes import web
from app.core.private_logs import mask_places_in_access_log
from app.metrics import MetricsMiddleware
from app.models.registry import Registry
from app.services.reload import watch_manifest
from app.settings import Settings
from app.wiring import Services, open_services

log = logging.getLogger("app")


async def _serve(app: FastAPI, config: Settings, stack: AsyncExitStack) -> None:
    """The services (``app.wiring``) on ``app.state.services``, where ``app.api.deps`` finds
    them; their loading in a worker thread, and the manifest watcher after it."""
    services: Services = await stack.enter_async_context(open_services(config))
    services.metrics.info.labels(__version__).set(1)
    app.state.services = services
    loading = asyncio.create_task(asyncio.to_thread(services.load))
    stack.push_async_callback(asyncio.shield, loading)  # a thread cannot be cancelled: let it finish
    if config.models.reload_interval:
        watching = asyncio.create_task(_after(loading, services.registry, config))
        stack.push_async_callback(_cancel, watching)
    log.info(
        "serving; loading %d models from %s (+ %s where present)",
        len(services.registry.manifest.models), config.models.manifest, config.models.user_manifest,
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
        mask_places_in_access_log()
        async with AsyncExitStack() as stack:
            await _serve(app, config, stack)
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
