"""Addresses of remote processes: ``tcp://host:port`` and ``http://host:port``.

Placement checks every address it is given before anything is wired, and fused
processes never load a transport, so the parsing lives here, below both.
"""

from __future__ import annotations

import msgspec

from nanobuild.runtime.errors import SettingsError

SCHEMES = ("tcp", "http")


class AddressError(SettingsError):
    """A remote address is not ``tcp://host:port`` or ``http://host:port``."""


class Address(msgspec.Struct, frozen=True):
    """Where a remote process listens: ``scheme://host:port``."""

    scheme: str
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


def parse_address(text: str, schemes: tuple[str, ...] = SCHEMES) -> Address:
    """``text`` as an Address, or ``AddressError`` naming it and saying what is wrong."""
    scheme, sep, rest = text.partition("://")
    if not sep or scheme not in schemes:
        wanted = " or ".join(f"{s}://host:port" for s in schemes)
        raise AddressError(f"bad remote address {text!r}: write {wanted}")
    host, port = _host_and_port(text, rest.rstrip("/"))
    return Address(scheme, host, port)


def _host_and_port(text: str, rest: str) -> tuple[str, int]:
    bracketed = rest.startswith("[")  # an IPv6 host: [::1]:9000
    if bracketed:
        host, _, tail = rest[1:].partition("]")
        port_text = tail[1:] if tail.startswith(":") else ""
    elif ":" not in rest:
        raise AddressError(f"bad remote address {text!r}: it names no port (host:port)")
    else:
        host, _, port_text = rest.rpartition(":")
    if not host or "/" in host or "@" in host or (":" in host and not bracketed):
        raise AddressError(f"bad remote address {text!r}: it names no host (host:port)")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise AddressError(f"bad remote address {text!r}: the port must be 1-65535")
    return host, int(port_text)
