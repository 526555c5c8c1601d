"""URL -> image bytes, treating every URL as hostile.

Only http/https, no credentials; the host must pass FETCH_ALLOWED_HOSTS when set; the connection
goes only to an address that was checked, in the transport itself (``address_guard``: no second
lookup for DNS rebinding); redirects are followed by hand so each hop is checked the same way; the
body is streamed under a byte cap and a total deadline. httpx's errors are translated here: the
image host failing is 502, it being too slow is 504.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import httpx

from app.errors import (
    InvalidURL,
    PayloadTooLarge,
    UnsupportedMediaType,
    UpstreamError,
    UpstreamTimeout,
)
from app.imaging.address_guard import CheckedTransport, HostPolicy
from app.settings import FetchSettings

MAX_URL_LENGTH = 2048
_REDIRECTS = {301, 302, 303, 307, 308}
# Image hosts often serve photos as a generic binary; anything else is not a photo.
_GENERIC_TYPES = {"application/octet-stream", "binary/octet-stream", ""}


@dataclass(frozen=True, slots=True)
class FetchedImage:
    data: bytes
    content_type: str
    url: str


def parse_url(raw: str) -> httpx.URL:
    if len(raw) > MAX_URL_LENGTH:
        raise InvalidURL(f"img_url is longer than {MAX_URL_LENGTH} characters")
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, ValueError) as exc:
        raise InvalidURL(f"img_url is not a valid URL: {exc}") from exc
    if url.scheme not in ("http", "https"):
        raise InvalidURL(
            f"img_url must use http or https, not {url.scheme or 'no scheme'!r}",
            detail={"url": raw[:200]},
        )
    if not url.host:
        raise InvalidURL("img_url has no host", detail={"url": raw[:200]})
    if url.userinfo:
        raise InvalidURL("img_url must not carry credentials")
    if url.host.endswith("."):  # "localhost." is localhost: one spelling per host for every check
        url = url.copy_with(host=url.host.rstrip("."))
    return url


class ImageFetcher:
    def __init__(self, client: httpx.AsyncClient, settings: FetchSettings) -> None:
        self._client = client
        self._settings = settings
        self._policy = HostPolicy(settings.allow_private_networks, settings.allowed_hosts)

    async def fetch(self, raw_url: str) -> FetchedImage:
        url = parse_url(raw_url)
        try:
            async with asyncio.timeout(self._settings.total_timeout):
                return await self._follow(url)
        except TimeoutError as exc:
            raise UpstreamTimeout(
                f"the image host did not deliver within {self._settings.total_timeout:g}s",
                detail={"host": url.host},
            ) from exc

    async def _follow(self, url: httpx.URL) -> FetchedImage:
        for _ in range(self._settings.max_redirects + 1):
            self._policy.check_name(url.host)  # addresses are checked when connecting
            try:
                async with self._client.stream("GET", url) as response:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        url = parse_url(str(url.join(response.headers["location"])))
                        continue
                    return await self._read(url, response)
            except httpx.TimeoutException as exc:
                raise UpstreamTimeout(
                    f"the image host {url.host!r} timed out ({type(exc).__name__})",
                    detail={"host": url.host},
                ) from exc
            except httpx.HTTPError as exc:
                raise UpstreamError(
                    f"could not fetch the image from {url.host!r}: {type(exc).__name__}",
                    detail={"host": url.host},
                ) from exc
        raise UpstreamError(f"more than {self._settings.max_redirects} redirects", detail={"host": url.host})

    async def _read(self, url: httpx.URL, response: httpx.Response) -> FetchedImage:
        if response.status_code != 200:
            raise UpstreamError(
                f"the image host answered HTTP {response.status_code}",
                detail={"host": url.host, "upstream_status": response.status_code},
            )
        content_type = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        if not (content_type.startswith("image/") or content_type in _GENERIC_TYPES):
            raise UnsupportedMediaType(
                f"img_url points to {content_type!r}, not an image",
                detail={"content_type": content_type},
            )
        cap = self._settings.max_download_bytes
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise PayloadTooLarge(
                f"the image is {declared} bytes; at most {cap} are accepted",
                detail={"bytes": int(declared), "max_bytes": cap},
            )
        chunks: list[bytes] = []
        received = 0
        async for chunk in response.aiter_bytes():
            received += len(chunk)
            if received > cap:
                raise PayloadTooLarge(f"the image is larger than {cap} bytes", detail={"max_bytes": cap})
            chunks.append(chunk)
        return FetchedImage(data=b"".join(chunks), content_type=content_type, url=str(url))


def build_client(settings: FetchSettings) -> httpx.AsyncClient:
    timeout = httpx.Timeout(
        connect=settings.connect_timeout,
        read=settings.read_timeout,
        write=settings.read_timeout,
        pool=settings.connect_timeout,
    )
    policy = HostPolicy(settings.allow_private_networks, settings.allowed_hosts)
    return httpx.AsyncClient(
        timeout=timeout,
        follow_redirects=False,  # each hop is checked by ImageFetcher
        transport=CheckedTransport(policy, httpx.Limits(max_connections=100, max_keepalive_connections=20)),
        headers={"User-Agent": settings.user_agent, "Accept": "image/*"},
        trust_env=False,  # a proxy from the environment would bypass the address check
    )
