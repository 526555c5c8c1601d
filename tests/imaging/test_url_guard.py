"""The address check, as a pure function: no traffic leaves the machine in these tests."""

from __future__ import annotations

import pytest

from app.errors import InvalidURL
from app.imaging.address_guard import is_public_address
from app.imaging.fetch import parse_url

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "0.0.0.0",
    "10.0.0.1",
    "172.16.0.1",
    "192.168.1.1",
    "100.64.0.1",
    "169.254.169.254",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456::1",
    "fe80::1",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "ff02::1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
    "::ffff:169.254.169.254",
    "100.127.255.254",
    "198.18.0.1",  # benchmarking range
    "192.0.2.1",  # documentation range
]
ALLOWED = ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111"]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_addresses_are_refused(address):
    assert not is_public_address(address)


@pytest.mark.parametrize("address", ALLOWED)
def test_public_addresses_pass(address):
    assert is_public_address(address)


@pytest.mark.parametrize(
    "url", ["file:///etc/passwd", "gopher://x/", "http://", "//example.org/a.jpg", "http://u:p@example.org/"]
)
def test_bad_urls_are_refused_before_any_lookup(url):
    with pytest.raises(InvalidURL):
        parse_url(url)
