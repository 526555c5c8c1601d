"""The pure-ASGI middlewares around every request: body size, deadline, CORS. Each reads the
settings the lifespan put on the app, so creating the app reads no configuration."""

from __future__ import annotations

import asyncio

from fastapi.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import render_error
from app.asgi import HttpMiddleware, ResponseWatch
from app.errors import DeadlineExceeded, PayloadTooLarge
from app.settings import Settings

# Multipart framing and small text fields on top of the largest accepted photo.
_FORM_OVERHEAD = 1024 * 1024


class BodySizeLimit(HttpMiddleware):
    """Refuses a request body over the limit before it is spooled anywhere: at once when
    Content-Length says so, else as soon as the streamed bytes pass it. The limit comes from
    the settings the lifespan put on the app."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        settings: Settings = scope["app"].state.services.settings
        limit = settings.images.max_upload_bytes + _FORM_OVERHEAD
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
    """Answers 503 ``deadline_exceeded`` for a request still running after SERVER_REQUEST_TIMEOUT, so a
    slow photo or a stuck upstream never holds a client (or a connection) indefinitely. Work
    already in a worker thread finishes there and is dropped; the runner counts it until then."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        timeout = scope["app"].state.services.settings.server.request_timeout
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
    """CORS from the settings the lifespan loaded; with no SECURITY_CORS_ORIGINS no CORS header is ever
    sent, so browsers keep other sites out."""

    def __init__(self, app: ASGIApp) -> None:
        super().__init__(app)
        self._cors: ASGIApp | None = None

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not scope["app"].state.services.settings.security.cors_origins:
            await self.app(scope, receive, send)
            return
        if self._cors is None:
            self._cors = CORSMiddleware(
                self.app,
                allow_origins=scope["app"].state.services.settings.security.cors_origins,
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
