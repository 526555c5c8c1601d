"""The GBIF species API (``GET {GBIF_API_URL}/species/match``), called carefully.

Every call goes through one client: connect/read timeouts and an overall deadline, retries with
exponential backoff on 429, 5xx and timeouts (honouring Retry-After), a semaphore bounding the
concurrent upstream calls, and a SQLite response cache with a TTL whose stale entries still
answer when GBIF is down.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlencode

import httpx

from app.enrich.cache import ResponseCache
from app.errors import UpstreamError, UpstreamTimeout
from app.settings import Settings

log = logging.getLogger(__name__)

CacheState = Literal["hit", "miss", "stale"]
_RETRIED = {429, 500, 502, 503, 504}


@dataclass(frozen=True, slots=True)
class GbifAnswer:
    payload: dict[str, Any]
    cache: CacheState


class GbifClient:
    def __init__(self, settings: Settings, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._settings = settings
        self._client = httpx.AsyncClient(
            base_url=str(settings.gbif_api_url).rstrip("/") + "/",
            timeout=httpx.Timeout(
                connect=settings.gbif_connect_timeout,
                read=settings.gbif_read_timeout,
                write=settings.gbif_read_timeout,
                pool=settings.gbif_total_timeout,
            ),
            headers={"User-Agent": settings.fetch_user_agent, "Accept": "application/json"},
            transport=transport,
            trust_env=False,
        )
        self._slots = asyncio.Semaphore(settings.gbif_max_concurrency)
        self._cache = ResponseCache(settings.gbif_cache_path)
        self.upstream_calls = 0

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
        key = "species/match?" + urlencode(sorted(query.items()))
        cached = await asyncio.to_thread(self._cache.get, key)
        if cached is not None and cached.age_s < self._settings.gbif_cache_ttl_s:
            return GbifAnswer(cached.payload, "hit")
        try:
            payload = await self._get("species/match", query)
        except (UpstreamError, UpstreamTimeout) as exc:
            if cached is None:
                raise
            log.warning("GBIF failed (%s); serving a cached answer %.0f s old", exc.message, cached.age_s)
            return GbifAnswer(cached.payload, "stale")
        await asyncio.to_thread(self._cache.put, key, payload)
        return GbifAnswer(payload, "miss")

    async def _get(self, path: str, query: dict[str, Any]) -> dict[str, Any]:
        settings = self._settings
        try:
            async with asyncio.timeout(settings.gbif_total_timeout):
                attempt = 0
                while True:
                    outcome, wait = await self._attempt(path, query)
                    if isinstance(outcome, dict):
                        return outcome
                    if attempt >= settings.gbif_retries or wait is None:
                        raise outcome
                    await asyncio.sleep(min(wait or settings.gbif_backoff * 2**attempt, 10.0))
                    attempt += 1
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"GBIF did not answer within {settings.gbif_total_timeout:g} s (retries included)",
                detail={"upstream": "gbif"},
            ) from exc

    async def _attempt(
        self, path: str, query: dict[str, Any]
    ) -> tuple[dict[str, Any] | UpstreamError | UpstreamTimeout, float | None]:
        """One call: (the JSON, None) or (the error, seconds to wait before a retry; None = final)."""
        async with self._slots:
            self.upstream_calls += 1
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

    async def aclose(self) -> None:
        await self._client.aclose()
        self._cache.close()
