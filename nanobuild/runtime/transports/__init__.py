"""Transports: how a call reaches a service that runs in another process (DESIGN §8).

    Transport.handle_call(target, request)    the one seam (base.py)
     ├── TcpTransport    tcp://host:port   nanobuild's own protocol (tcp.py, frames.py)
     ├── HttpTransport   http://host:port  the HTTP face, for interop (http.py)
     └── LocalTransport  in this process, through the wire form (local.py)

Wiring turns each remote service's contracts into routes with ``remote_route``, all
going through one transport per remote address (``Transports`` keeps them)::

    transports = Transports()                       # secret: NANO_SECRET
    remote = transports.get("tcp://10.0.0.7:9100")
    routes |= remote_routes(remote, "catalog", [GetProduct, ListProducts], timeout=2.0)
    routes[Charge] = remote_route(transports.get("http://pay:8000"), "payment", Charge)
    ...
    await transports.aclose()                       # at shutdown

The serving side is ``TcpServer`` (tcp.py); the HTTP face serves ``http://`` callers.
"""

from __future__ import annotations

from nanobuild.runtime.transports.base import (
    DEFAULT_TIMEOUT,
    Address,
    AddressError,
    Backoff,
    ConfigError,
    Target,
    Transport,
    parse_address,
    remote_route,
    remote_routes,
)
from nanobuild.runtime.transports.http import HttpTransport
from nanobuild.runtime.transports.local import LocalTransport
from nanobuild.runtime.transports.tcp import TcpServer, TcpTransport


class Transports:
    """One transport per remote address, made on first use and shared by every route."""

    def __init__(self, *, secret: str | None = None) -> None:
        self._secret = secret
        self._by_address: dict[Address, Transport] = {}

    def get(self, address: str | Address) -> Transport:
        """The transport for ``address`` (``tcp://`` or ``http://``); ``AddressError`` if bad."""
        parsed = parse_address(address) if isinstance(address, str) else address
        transport = self._by_address.get(parsed)
        if transport is None:
            transport = transport_for(parsed, secret=self._secret)
            self._by_address[parsed] = transport
        return transport

    async def aclose(self) -> None:
        """Close every transport made so far."""
        transports, self._by_address = list(self._by_address.values()), {}
        for transport in transports:
            await transport.aclose()


def transport_for(address: str | Address, *, secret: str | None = None) -> Transport:
    """A new transport for ``address``, chosen by its scheme; it connects on its first call."""
    parsed = parse_address(address) if isinstance(address, str) else address
    if parsed.scheme == "tcp":
        return TcpTransport(parsed, secret=secret)
    return HttpTransport(parsed, secret=secret)


__all__ = [
    "DEFAULT_TIMEOUT",
    "Address",
    "AddressError",
    "Backoff",
    "ConfigError",
    "HttpTransport",
    "LocalTransport",
    "Target",
    "TcpServer",
    "TcpTransport",
    "Transport",
    "Transports",
    "parse_address",
    "remote_route",
    "remote_routes",
    "transport_for",
]
