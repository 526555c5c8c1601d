"""The fetcher connects to the address it checked: one lookup per connection, no second lookup
for a rebinding DNS server to answer differently, and the URL's host name kept in Host."""

from __future__ import annotations

import asyncio

import pytest

from app.errors import URLNotAllowed
from app.imaging import address_guard
from app.imaging.fetch import ImageFetcher, build_client
from app.settings import FetchSettings


class RebindingResolver:
    """Answers each lookup of a name with the next address in its script."""

    def __init__(self, answers: list[list[str]]) -> None:
        self.answers = answers
        self.calls = 0

    async def __call__(self, host, port, **kwargs):
        answer = self.answers[min(self.calls, len(self.answers) - 1)]
        self.calls += 1
        return [(2 if ":" not in a else 10, 1, 6, "", (a, port)) for a in answer]


def fetch(settings: FetchSettings, url: str):
    async def run():
        client = build_client(settings)
        try:
            return await ImageFetcher(client, settings).fetch(url)
        finally:
            await client.aclose()

    return asyncio.run(run())


def test_a_name_resolving_to_loopback_is_refused_without_a_connection(monkeypatch, image_host):
    resolver = RebindingResolver([["127.0.0.1"]])
    monkeypatch.setattr(address_guard.anyio, "getaddrinfo", resolver)
    before = sum(image_host.hits.values())
    with pytest.raises(URLNotAllowed, match="non-public"):
        fetch(FetchSettings(), f"http://photos.rebind.test:{image_host.port}/files/photo.jpg")
    assert resolver.calls == 1 and sum(image_host.hits.values()) == before


def test_one_private_address_among_public_ones_is_enough_to_refuse(monkeypatch, image_host):
    monkeypatch.setattr(
        address_guard.anyio, "getaddrinfo", RebindingResolver([["93.184.216.34", "127.0.0.1"]])
    )
    with pytest.raises(URLNotAllowed):
        fetch(FetchSettings(), f"http://mixed.rebind.test:{image_host.port}/files/photo.jpg")


def test_the_connection_goes_to_the_checked_address_with_the_host_name_kept(monkeypatch, image_host):
    """Allowed (by FETCH_ALLOWED_HOSTS) to reach 127.0.0.1; the resolver would answer something
    else on a second lookup, but none is made: the bytes come from the checked address."""
    resolver = RebindingResolver([["127.0.0.1"], ["10.0.0.1"]])
    monkeypatch.setattr(address_guard.anyio, "getaddrinfo", resolver)
    settings = FetchSettings(allowed_hosts=["rebind.test", "127.0.0.1/32"])
    image = fetch(settings, f"http://photos.rebind.test:{image_host.port}/files/photo.jpg")
    assert image.data[:3] == b"\xff\xd8\xff"
    assert resolver.calls == 1
    assert image_host.host_headers[-1] == f"photos.rebind.test:{image_host.port}"


def test_the_allowlist_refuses_other_hosts_before_any_lookup(monkeypatch):
    resolver = RebindingResolver([["93.184.216.34"]])
    monkeypatch.setattr(address_guard.anyio, "getaddrinfo", resolver)
    with pytest.raises(URLNotAllowed, match="FETCH_ALLOWED_HOSTS"):
        fetch(
            FetchSettings(allowed_hosts=["images.example.org"]),
            "http://evil.example.org.attacker.test/x.jpg",
        )
    assert resolver.calls == 0
