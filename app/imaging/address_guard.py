"""Where the fetcher may connect, decided once per connection, on the address it connects to.

The transport's network backend resolves the host itself, refuses the connection unless every
address is globally routable (or allowed by FETCH_ALLOWED_HOSTS), and then connects to the
address it checked. There is no second lookup for a rebinding DNS server to answer differently,
while the URL's host name still goes into the Host header and the TLS SNI.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable, Sequence
from typing import Any

import anyio
import httpcore
import httpx

from app.errors import UpstreamError, URLNotAllowed

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 form carries: mapped, NAT64, 6to4 or Teredo."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if any(ip in net for net in _NAT64):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    return None


def is_public_address(address: str) -> bool:
    ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast


class HostPolicy:
    """FETCH_ALLOW_PRIVATE_NETWORKS and FETCH_ALLOWED_HOSTS, applied to names and addresses."""

    def __init__(self, allow_private: bool, allowed_hosts: Sequence[str] = ()) -> None:
        self.allow_private = allow_private
        self.names: list[str] = []
        self.networks: list[IPNetwork] = []
        for entry in allowed_hosts:
            try:
                self.networks.append(ipaddress.ip_network(entry.strip(), strict=False))
            except ValueError:
                self.names.append(entry.strip().lower().rstrip("."))

    @property
    def restricted(self) -> bool:
        return bool(self.names or self.networks)

    def _listed(self, address: str) -> bool:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        return any(ip in net for net in self.networks)

    def check_name(self, host: str) -> None:
        """Before any lookup: with an allowlist, the host must be a listed name (or a literal
        address inside a listed network)."""
        if not self.restricted:
            return
        name = host.lower().rstrip(".")
        if any(name == allowed or name.endswith("." + allowed) for allowed in self.names):
            return
        try:
            if self._listed(name.strip("[]")):
                return
        except ValueError:
            pass
        raise URLNotAllowed(f"img_url host {host!r} is not in FETCH_ALLOWED_HOSTS", detail={"host": host})

    def check_addresses(self, host: str, addresses: Iterable[str]) -> None:
        if self.allow_private:
            return
        refused = sorted({a for a in addresses if not is_public_address(a) and not self._listed(a)})
        if refused:
            raise URLNotAllowed(
                f"img_url host {host!r} resolves to a non-public address; refused",
                detail={"host": host, "addresses": refused},
            )


class CheckedAddressBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, policy: HostPolicy) -> None:
        self._policy = policy
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        try:
            with anyio.fail_after(timeout):
                infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except TimeoutError as exc:
            raise httpcore.ConnectTimeout(f"resolving {host!r} timed out") from exc
        except socket.gaierror as exc:
            raise UpstreamError(f"could not resolve host {host!r}", detail={"host": host}) from exc
        addresses = [str(info[4][0]) for info in infos]
        self._policy.check_addresses(host, addresses)  # every address, so none can be picked later
        return await self._inner.connect_tcp(
            addresses[0], port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,  # noqa: ASYNC109 - httpcore's interface
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        raise URLNotAllowed("unix sockets are never fetched from")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class CheckedTransport(httpx.AsyncHTTPTransport):
    """httpx's own transport, with the connection pool's network backend replaced."""

    def __init__(self, policy: HostPolicy, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=CheckedAddressBackend(policy),
        )
