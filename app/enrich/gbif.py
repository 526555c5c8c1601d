"""The GBIF API (``GET {GBIF_API_URL}/species/match``, ``/occurrence/search``), called carefully.

Every call goes through one client: connect/read timeouts and an overall deadline, retries with
exponential backoff on 429, 5xx and timeouts (honouring Retry-After), a semaphore bounding the
concurrent upstream calls, and a SQLite response cache with a TTL whose stale entries still
answer when GBIF is down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from app.enrich.cache import ResponseCache
from app.errors import UpstreamError, UpstreamTimeout
from app.settings import GbifSettings

log = logging.getLogger(__name__)

CacheState = Literal["hit", "miss", "stale"]
_RETRIED = {429, 500, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class GbifAnswer:
    payload: dict[str, Any]
    cache: CacheState


def build_http_client(
    settings: GbifSettings, transport: httpx.AsyncBaseTransport | None = None
) -> httpx.AsyncClient:
    """The HTTP client a ``GbifClient`` is handed: GBIF's base URL, its timeouts, no proxies
    from the environment."""
    return httpx.AsyncClient(
        base_url=settings.api_url.rstrip("/") + "/",
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.total_timeout,
        ),
        headers={"User-Agent": settings.user_agent, "Accept": "application/json"},
        transport=transport,
        trust_env=False,
    )


class GbifClient:
    """Owns neither its HTTP client nor its cache: whoever built them closes them."""

    def __init__(self, http: httpx.AsyncClient, cache: ResponseCache, settings: GbifSettings) -> None:
        self._settings = settings
        self._client = http
        self._slots = asyncio.Semaphore(settings.max_concurrency)
        self._cache = cache

    async def match(
        self,
        name: str,
        *,
        kingdom: str | None = None,
        rank: str | None = None,
        strict: bool = False,
        verbose: bool = False,
    ) -> GbifAnswer:
        params = {"name": name, "kingdom": kingdom, "rank": rank, "strict": strict, "verbose": verbose}
        query = {
            k: str(v).lower() if isinstance(v, bool) else v
            for k, v in params.items()
            if v not in (None, False)
        }
        return await self._cached("species/match", query, lambda: self._get("species/match", query))

    async def occurrence_facets(
        self, query: Mapping[str, str | int], *, max_wait_s: float | None = None
    ) -> GbifAnswer:
        """``GET occurrence/search`` with ``query`` (facets wanted, e.g. ``facet=speciesKey``,
        ``limit=0``), with the same care as ``match``: retries, a concurrency slot, the SQLite
        cache with its TTL, and a stale answer when GBIF fails.

        ``max_wait_s`` (seconds) bounds the whole wait for GBIF, the slot included, for callers on
        a request's path; past it GBIF counts as failed (a stale answer, else UpstreamTimeout).
        An answer without GBIF's ``count`` and ``facets`` is an UpstreamError, never cached."""
        params = {k: str(v) for k, v in query.items()}

        async def fetch() -> dict[str, Any]:
            try:
                async with asyncio.timeout(max_wait_s):
                    payload = await self._get("occurrence/search", params)
            except TimeoutError as exc:  # only ours: _get turns its own deadline into UpstreamTimeout
                raise UpstreamTimeout(
                    f"GBIF did not answer within {max_wait_s:g} s", detail={"upstream": "gbif"}
                ) from exc
            if not isinstance(payload.get("count"), int) or not isinstance(payload.get("facets"), list):
                raise UpstreamError(
                    "GBIF answered an occurrence search without its count and facets",
                    detail={"upstream": "gbif"},
                )
            return payload

        return await self._cached("occurrence/search", params, fetch)

    async def _cached(
        self, path: str, query: Mapping[str, Any], fetch: Callable[[], Awaitable[dict[str, Any]]]
    ) -> GbifAnswer:
        """A fresh cached answer, else ``fetch()`` (cached), else, when GBIF fails, a stale one.
        The key is the whole request, the upstream's base URL included: another GBIF_API_URL
        (a mirror, a test server) never gets this one's answers."""
        key = f"{self._client.base_url}{path}?" + urlencode(sorted(query.items()))
        cached = await asyncio.to_thread(self._cache.get, key)
        if cached is not None and cached.age_s < self._settings.cache_ttl_s:
            return GbifAnswer(cached.payload, "hit")
        try:
            payload = await fetch()
        except (UpstreamError, UpstreamTimeout) as exc:
            if cached is None:
                raise
            log.warning("GBIF failed (%s); serving a cached answer %.0f s old", exc.message, cached.age_s)
            return GbifAnswer(cached.payload, "stale")
        await asyncio.to_thread(self._cache.put, key, payload)
        return GbifAnswer(payload, "miss")

    async def _get(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        """One lookup holds one of the GBIF_MAX_CONCURRENCY slots for all its attempts (so its
        backoffs ease the pressure on GBIF too); its deadline runs from when it got the slot:
        waiting behind this process's own queue is not GBIF being slow (link-gbif queues
        hundreds of names)."""
        settings = self._settings
        await self._slots.acquire()
        try:
            async with asyncio.timeout(settings.total_timeout):
                attempt = 0
                while True:
                    outcome, wait = await self._attempt(path, query)
                    if isinstance(outcome, dict):
                        return outcome
                    if attempt >= settings.retries or wait is None:
                        raise outcome
                    await asyncio.sleep(min(wait or settings.backoff * 2**attempt, 10.0))
                    attempt += 1
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"GBIF did not answer within {settings.total_timeout:g} s (retries included)",
                detail={"upstream": "gbif"},
            ) from exc
        finally:
            self._slots.release()

    async def _attempt(
        self, path: str, query: dict[str, Any]
    ) -> tuple[dict[str, Any] | UpstreamError | UpstreamTimeout, float | None]:
        """One call: (the JSON, None) or (the error, seconds to wait before a retry; None = final)."""
        try:
            response = await self._client.get(path, params=query)
        except httpx.TimeoutException:
            return UpstreamTimeout("GBIF timed out", detail={"upstream": "gbif"}), 0.0
        except httpx.TransportError as exc:
            return UpstreamError(f"GBIF is unreachable: {exc}", detail={"upstream": "gbif"}), 0.0
        status = response.status_code
        if status == 200:
            try:
                body = response.json()
            except ValueError:
                return UpstreamError("GBIF answered with invalid JSON", detail={"upstream": "gbif"}), None
            if not isinstance(body, dict):
                return UpstreamError("GBIF answered with unexpected JSON", detail={"upstream": "gbif"}), None
            return body, None
        error = UpstreamError(
            f"GBIF answered HTTP {status}" + (" (rate limited)" if status == 429 else ""),
            detail={"upstream": "gbif", "upstream_status": status},
        )
        if status not in _RETRIED:
            return error, None
        retry_after = response.headers.get("retry-after", "")
        return error, float(retry_after) if retry_after.isdigit() else 0.0


@asynccontextmanager
async def open_gbif(settings: GbifSettings) -> AsyncIterator[GbifClient]:
    """A client with its own HTTP client and cache, both closed on exit (the server's lifespan
    and the CLI open GBIF the same way)."""
    cache = ResponseCache(settings.cache_path)
    try:
        async with build_http_client(settings) as http:
            yield GbifClient(http, cache, settings)
    finally:
        cache.close()
