"""``LocalTransport``: a node's endpoints served in this process, through the wire form.

A call is encoded, served (``serving.Served``, as the TCP server serves it) and
decoded exactly as if it had crossed the wire, in the caller's own loop. It is to a
remote process what httpx's ``ASGITransport`` is to a remote app — the test double of
a split deployment, and what strict mode (``NANO_STRICT=1``) runs every in-memory
call through.
"""

from __future__ import annotations

from typing import Any

from nanobuild.runtime.addresses import Address
from nanobuild.runtime.codecs import MSGPACK
from nanobuild.runtime.errors import NanoError
from nanobuild.runtime.faults import unknown_contract
from nanobuild.runtime.node import Node
from nanobuild.runtime.seam import Route
from nanobuild.runtime.serving import Served, served_endpoints
from nanobuild.runtime.transports.base import Deadline, Target, Transport


class LocalTransport(Transport):
    """Serve calls from ``node`` in this process, through the same wire form as TCP."""

    def __init__(self, node: Node) -> None:
        self.address = Address("local", "localhost", 0)
        self._served = served_endpoints(node, "local")

    async def handle_call(self, target: Target, request: Any) -> Any:
        served = self._served.get((target.service, target.name))
        if served is None:
            raise unknown_contract(target.service, target.name)
        async with Deadline(target.timeout, lambda: target.timed_out(target.timeout)):
            return await round_trip(served, target, request)


_encode = MSGPACK.encode


async def round_trip(served: Served, target: Target, request: object) -> object:
    """``request`` served by ``served`` as if across the wire: encoded, answered, decoded.

    What the handler raises reaches the caller as its wire form would rebuild it.
    """
    try:
        payload = await served.answer(_encode(request))
    except Exception as exc:
        raise NanoError.from_wire(served.failure(exc).to_wire()) from exc
    return target.decode(payload)


def strict_route(served: Served, target: Target) -> Route:
    """The route strict mode gives an endpoint of this process: ``round_trip``, no deadline."""

    async def strict(request: object) -> object:
        return await round_trip(served, target, request)

    return strict
