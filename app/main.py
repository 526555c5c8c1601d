"""The app factory and its lifespan.

``app.main:app`` is what uvicorn serves. Creating it reads no settings and loads nothing:
``Settings()`` is built when the server starts, and the models load in a worker thread after
start-up, so /health/live answers at once and /health/ready turns 200 when they are in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app import __version__
from app.api.access import RateLimiter
from app.api.main import api_router
from app.api.routes import web
from app.asgi import HttpMiddleware, ResponseWatch
from app.enrich.gbif import GbifClient
from app.errors import DeadlineExceeded, PayloadTooLarge, ServiceError
from app.imaging.fetch import ImageFetcher, build_client
from app.index.store import IndexStore
from app.metrics import Metrics, MetricsMiddleware
from app.models.manifest import ManifestError, load_manifest
from app.models.registry import Registry
from app.models.runner import InferenceRunner
from app.settings import Settings

log = logging.getLogger("app")

# Multipart framing and small text fields on top of the largest accepted photo.
_FORM_OVERHEAD = 1024 * 1024


def _error_json(
    status: int,
    code: str,
    message: str,
    detail: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = {"error": {"code": code, "message": message, "detail": detail or {}}}
    return JSONResponse(body, status_code=status, headers=headers)


def render_error(exc: ServiceError) -> JSONResponse:
    return _error_json(exc.status, exc.code, exc.message, exc.detail, exc.headers)


class BodySizeLimit(HttpMiddleware):
    """Refuses a request body over the limit before it is spooled anywhere: at once when
    Content-Length says so, else as soon as the streamed bytes pass it. The limit comes from
    the settings the lifespan put on the app."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Settings = scope["app"].state.settings
        limit = settings.max_upload_bytes + _FORM_OVERHEAD
        for name, value in scope["headers"]:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                response = render_error(self._error(limit))
                await response(scope, receive, send)
                return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self._error(limit)
            return message

        await self.app(scope, limited, send)

    @staticmethod
    def _error(limit: int) -> PayloadTooLarge:
        return PayloadTooLarge(f"the request body is larger than {limit} bytes", detail={"max_bytes": limit})


class RequestDeadline(HttpMiddleware):
    """Answers 503 ``deadline_exceeded`` for a request still running after REQUEST_TIMEOUT, so a
    slow photo or a stuck upstream never holds a client (or a connection) indefinitely. Work
    already in a worker thread finishes there and is dropped; the runner counts it until then."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout = scope["app"].state.settings.request_timeout
        response = ResponseWatch(send)
        try:
            async with asyncio.timeout(timeout):
                await self.app(scope, receive, response.send)
        except TimeoutError:
            if response.status is not None:  # too late for a clean answer: the connection closes
                raise
            error = DeadlineExceeded(
                f"the request took longer than {timeout:g} s", headers={"Retry-After": "1"}
            )
            await render_error(error)(scope, receive, send)


class ConfiguredCORS(HttpMiddleware):
    """CORS from the settings the lifespan loaded; with no CORS_ORIGINS no CORS header is ever
    sent, so browsers keep other sites out."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._cors: ASGIApp | None = None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not scope["app"].state.settings.cors_origins:
            await self.app(scope, receive, send)
            return
        if self._cors is None:
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=scope["app"].state.settings.cors_origins,
                allow_methods=["GET", "POST"],
                allow_headers=["X-API-Key", "Authorization", "Content-Type"],
                expose_headers=[
                    "Retry-After",
                    "RateLimit-Limit",
                    "RateLimit-Remaining",
                    "RateLimit-Reset",
                    "X-Cache",
                ],
                max_age=600,
            )
        await self._cors(scope, receive, send)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def service_error(_: Request, exc: ServiceError) -> JSONResponse:
        return render_error(exc)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {"where": ".".join(str(part) for part in err.get("loc", ())), "problem": err.get("msg", "")}
            for err in exc.errors()
        ]
        summary = "; ".join(f"{p['where']}: {p['problem']}" for p in problems)
        return _error_json(400, "invalid_parameters", f"invalid request: {summary}", {"errors": problems})

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI turns any failure while parsing a form into a plain 400; keep our reason.
        if isinstance(exc.__cause__, ServiceError):
            return render_error(exc.__cause__)
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed"}
        return _error_json(
            exc.status_code,
            codes.get(exc.status_code, "http_error"),
            str(exc.detail),
            headers=dict(exc.headers) if exc.headers else None,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", exc_info=exc)
        return _error_json(500, "internal_error", "the server failed unexpectedly; this is a bug")


async def _watch_manifest(registry: Registry, config: Settings, loading: asyncio.Task[None]) -> None:
    """Re-read the manifest every MODELS_RELOAD_INTERVAL seconds; a broken one is logged and the
    models already loaded keep serving."""
    await loading
    while True:
        await asyncio.sleep(config.models_reload_interval)
        try:
            manifest = await asyncio.to_thread(load_manifest, config.models_manifest)
            reloaded = await asyncio.to_thread(registry.reload, manifest)
        except ManifestError as exc:
            log.warning("manifest not reloaded: %s", exc)
            continue
        if reloaded:
            log.info("manifest changed: loaded %s", ", ".join(reloaded))


def create_app(settings: Settings | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        config = settings or Settings()
        logging.basicConfig(level=config.log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        manifest = load_manifest(config.models_manifest)
        registry = Registry.from_settings(manifest, config)
        registry.on_batch = app.state.metrics.observe_batch
        runner = InferenceRunner(workers=config.inference_workers, max_queue=config.max_queue)
        client = build_client(config)
        app.state.settings = config
        app.state.registry = registry
        app.state.runner = runner
        app.state.explain_slots = asyncio.Semaphore(config.explain_concurrency)
        app.state.fetcher = ImageFetcher(client, config)
        gbif = GbifClient(config)
        app.state.gbif = gbif
        index_store = IndexStore(config.index_dir, registry)
        app.state.index_store = index_store
        app.state.rate_limiter = (
            RateLimiter(config.rate_limit_per_minute, config.rate_limit_burst)
            if config.rate_limit_per_minute
            else None
        )

        def load() -> None:
            registry.load_all()
            index_store.refresh()  # after the models: the index names its embedder

        loading = asyncio.create_task(asyncio.to_thread(load))
        watching = (
            asyncio.create_task(_watch_manifest(registry, config, loading))
            if config.models_reload_interval
            else None
        )
        log.info("serving; loading %d models from %s", len(manifest.models), config.models_manifest)
        try:
            yield
        finally:
            if watching is not None:
                watching.cancel()
            await asyncio.shield(loading)  # a thread cannot be cancelled; let it finish
            await client.aclose()
            await gbif.aclose()
            await asyncio.to_thread(runner.shutdown)
            registry.close()

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
    _install_error_handlers(app)
    app.include_router(api_router)
    app.include_router(web.router)
    app.mount("/web", web.static, name="web")
    app.add_middleware(BodySizeLimit)
    app.add_middleware(RequestDeadline)
    app.add_middleware(MetricsMiddleware)  # outside the deadline: a 503 from it is counted too
    app.add_middleware(ConfiguredCORS)  # outermost: preflights are answered before anything else
    return app


app = create_app()
