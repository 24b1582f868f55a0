"""The SSRF guard: refuse to connect to loopback, private, link-local and reserved addresses.

The check runs on the address the socket actually connects to (the transport resolves once and
connects to that address), so a DNS answer that changes between check and connect has no window.
SITREP_ALLOW_PRIVATE_HOSTS turns the guard off for tests and the offline demo.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

import httpcore
import httpx

from sitrep.errors import BlockedURLError

__all__ = ["GuardedTransport", "check_url", "is_public_address"]

_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def is_public_address(address: str) -> bool:
    """True only for a globally routable unicast address (IPv4-mapped and NAT64 IPv6 unwrapped)."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif ip in _NAT64:
            ip = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


def check_url(url: str) -> None:
    """Refuse what no fetch should ever do, whatever the address: other schemes, credentials."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise BlockedURLError(f"can't fetch {url!r}: only http and https URLs are fetched", url=url, reason="scheme")
    if not parts.hostname:
        raise BlockedURLError(f"can't fetch {url!r}: the URL has no host", url=url, reason="url")


class _GuardedBackend(httpcore.SyncBackend):
    """Resolves the host once, checks every address, and connects to the checked address only."""

    def __init__(self, allow_private: bool):
        super().__init__()
        self.allow_private = allow_private

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):  # type: ignore[no-untyped-def]
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise httpcore.ConnectError(f"DNS lookup of {host!r} failed: {exc}") from exc
        last_error: Exception | None = None
        for family, _type, _proto, _name, sockaddr in infos:
            address = str(sockaddr[0])
            if not self.allow_private and not is_public_address(address):
                last_error = BlockedURLError(
                    f"refused to connect to {host}:{port} ({address}): not a public address "
                    "(set SITREP_ALLOW_PRIVATE_HOSTS=1 only for tests and the demo)",
                    url=f"{host}:{port}",
                    reason="blocked-address",
                )
                continue
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except httpcore.ConnectError as exc:
                last_error = exc
        if isinstance(last_error, BlockedURLError):
            raise httpcore.ConnectError(str(last_error)) from last_error
        raise last_error or httpcore.ConnectError(f"no address for {host!r}")


class GuardedTransport(httpx.HTTPTransport):
    """httpx transport whose connections go through the guarded backend."""

    def __init__(self, *, allow_private: bool = False, **kwargs: object):
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._pool._network_backend = _GuardedBackend(allow_private)
